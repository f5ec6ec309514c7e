#!/usr/bin/env bash
# The training benchmark's whole matrix on this machine: every workload and implementation at
# 1, 2, 4, ... ranks up to the cores, one BLAS thread per rank (the README table and scaling
# chart), then the MLP with no thread variables set, as a user who sets none would launch it.
# Results go to OUT (default runs/bench-train, git-ignored): train.json, train.md,
# train-scaling.png, and the same under OUT/threads-unset and, for weak scaling (256 rows per
# rank, the global batch growing with the ranks), OUT/weak.
#
#   scripts/bench_train.sh [OUT]            REPEATS=5 RANKS=1,2,4 scripts/bench_train.sh
#
# Nothing here sets the oversubscription (CI) variables: they change MPICH's progress loop and
# so the very numbers being compared. PyTorch DDP rows appear when torch is installed.
set -euo pipefail

OUT=${1:-runs/bench-train}
PY=${PY:-.venv/bin/python}
REPEATS=${REPEATS:-5}
cores=$("$PY" -c "import os; print(len(os.sched_getaffinity(0)))")
if [[ -z "${RANKS:-}" ]]; then
    RANKS=1
    for ((n = 2; n <= cores; n *= 2)); do RANKS+=",$n"; done
fi

echo "== bench train: ranks $RANKS, $REPEATS repeats, one BLAS thread per rank -> $OUT" >&2
"$PY" -m mpitrain bench train --ranks "$RANKS" --repeats "$REPEATS" --out "$OUT"
"$PY" -m mpitrain plot "$OUT/train.json" >&2 || echo "(no chart: pip install matplotlib)" >&2

echo "== bench train: the MLP with no thread variables set -> $OUT/threads-unset" >&2
"$PY" -m mpitrain bench train --workloads mlp --impls mpitrain,baseline --ranks "$RANKS" \
    --repeats "$REPEATS" --threads unset --out "$OUT/threads-unset"

echo "== bench train: weak scaling, the MLP with 256 rows per rank -> $OUT/weak" >&2
"$PY" -m mpitrain bench train --workloads mlp --impls mpitrain,baseline --ranks "$RANKS" \
    --repeats "$REPEATS" --per-rank-batch 256 --out "$OUT/weak"
"$PY" -m mpitrain plot "$OUT/weak/train.json" >&2 || echo "(no chart: pip install matplotlib)" >&2
