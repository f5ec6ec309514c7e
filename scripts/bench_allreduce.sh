#!/usr/bin/env bash
# Allreduce benchmark on this machine: the README/docs table, the thread-level comparison and,
# with --calibrate, the auto table for 2, 4, ... ranks up to the cores at both thread levels
# (one job per world size, launched by `bench allreduce --calibrate` itself; RANKS=2,4 to choose).
# Results go to OUT (default runs/bench, git-ignored).
#
#   scripts/bench_allreduce.sh [--calibrate] [OUT]
#
# Ranks get one BLAS thread each; nothing here sets the oversubscription (CI) variables,
# because they change MPICH's progress loop and so the very numbers being compared.
set -euo pipefail

calibrate=0
if [[ "${1:-}" == "--calibrate" ]]; then calibrate=1; shift; fi
OUT=${1:-runs/bench}
PY=${PY:-.venv/bin/python}
MPIEXEC=${MPIEXEC:-$(dirname "$PY")/mpiexec}
NP=${NP:-2}
BENCH=${BENCH:-"$PY -m mpitrain bench allreduce"}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

run() {  # run LEVEL ARGS...: one benchmark at mpi4py thread level LEVEL ("default": mpi4py's own)
    local level=$1; shift
    echo "== $NP ranks, thread level $level: $BENCH $*" >&2
    if [[ "$level" == default ]]; then
        timeout 1800 "$MPIEXEC" -n "$NP" $BENCH --out "$OUT" "$@"
    else
        MPI4PY_RC_THREAD_LEVEL=$level timeout 1800 "$MPIEXEC" -n "$NP" $BENCH --out "$OUT" "$@"
    fi
}

if (( calibrate )); then
    rm -f "$OUT/allreduce-table.json"
    for level in multiple serialized; do
        echo "== calibration, thread level $level" >&2
        MPI4PY_RC_THREAD_LEVEL=$level timeout 14400 $BENCH --calibrate ${RANKS:+--ranks "$RANKS"} --out "$OUT"
    done
    echo "calibrated: export MPITRAIN_ALLREDUCE_TABLE=$(realpath "$OUT/allreduce-table.json")" >&2
    export MPITRAIN_ALLREDUCE_TABLE=$(realpath "$OUT/allreduce-table.json")
fi
run default      # the target: auto against native with mpi4py's defaults, one run
run serialized   # the same with MPI_THREAD_SERIALIZED, for the thread-level comparison
