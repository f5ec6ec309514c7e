#!/bin/bash
# `make test-slurm`: start a one-node Slurm cluster (munge, slurmctld, slurmd from Debian's
# packages, with a configuration written here), run scripts/slurm/train.sbatch at 4 tasks and check
#   - a mismatched launch (srun --mpi=none) stops with status 2 and one message;
#   - a rank killed mid-training ends the step (srun --kill-on-bad-exit=1);
#   - `mpitrain doctor` under srun reports no failure;
#   - the job's world is 4 ranks and only rank 0 prints;
#   - `scancel --signal=USR1 --batch` gives a checkpoint, exit status 75 and a requeue, and the
#     requeued job resumes from the checkpoint and finishes;
# then stop the daemons it started, by PID. Needs root and
#   apt-get install munge slurm-wlm slurmd slurmctld slurm-client slurm-wlm-basic-plugins
# Environment: VENV (default .venv), KEEP=1 keeps the scratch directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
VENV=$(cd "${VENV:-.venv}" && pwd)
for tool in munged slurmctld slurmd sbatch srun scontrol; do
    command -v "$tool" >/dev/null || { echo "test-slurm: $tool not found: apt-get install munge slurm-wlm" \
        "slurmd slurmctld slurm-client slurm-wlm-basic-plugins"; exit 1; }
done

T0=$(date +%s)
say() { echo "test-slurm [$(( $(date +%s) - T0 ))s]: $*"; }
fail() { say "FAILED: $*"; for f in "$D"/job-*.out "$D"/slurmctld.log "$D"/slurmd.log; do
             [ -f "$f" ] && { echo "----- $f"; tail -n 40 "$f"; }; done; exit 1; }

D=$(mktemp -d /tmp/mpitrain-slurm.XXXXXX)
chmod 755 "$D"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for _ in $(seq 20); do  # up to 10 s to shut down, then SIGKILL
        alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" -eq 0 ] && break
        sleep 0.5
    done
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    if [ -z "${KEEP:-}" ]; then rm -rf "$D"; else echo "test-slurm: kept $D"; fi
}
trap cleanup EXIT

# munge: its own key, socket and files, run as the munge user.
mkdir -p "$D/munge"
dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none
chown -R munge: "$D/munge"
chmod 700 "$D/munge"
chmod 400 "$D/munge/munge.key"
SOCKET=$D/munge/munge.socket
runuser -u munge -- munged --foreground --force --socket="$SOCKET" --key-file="$D/munge/munge.key" \
    --pid-file="$D/munge/munged.pid" --log-file="$D/munge/munged.log" --seed-file="$D/munge/munged.seed" &
PIDS+=($!)

# Ports that nothing else here listens on (another cluster may run beside this one).
port=$(( 20000 + RANDOM % 20000 ))
HOST=$(hostname -s)
export SLURM_CONF=$D/slurm.conf
mkdir -p "$D/state" "$D/spool"
cat > "$SLURM_CONF" <<EOF
ClusterName=mpitrain-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$(( port + 1 ))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
# No cgroups in this container: track processes through /proc, bind nothing, gather nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# The node declares 4 CPUs whatever its cores, for a 4-task job.
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=10
MpiDefault=none
MailProg=/bin/true
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=4 State=UNKNOWN
PartitionName=test Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -D -i -f "$SLURM_CONF" &
PIDS+=($!)
slurmd -D -f "$SLURM_CONF" &
PIDS+=($!)

for _ in $(seq 60); do
    sinfo -h -o %t 2>/dev/null | grep -q idle && break
    sleep 1
done
sinfo -h -o %t | grep -q idle || fail "the node did not become idle"
say "cluster up: $(sinfo -h -o '%P %D %c %t')"

export MPIR_CVAR_CH4_PROGRESS_THROTTLE=true MPIR_CVAR_POLLS_BEFORE_YIELD=1 OMP_NUM_THREADS=1
PY=$VENV/bin/python

# 1. Slurm's default MpiDefault=none starts 4 one-rank jobs: mpitrain must refuse, once.
set +e
srun -n 4 --mpi=none "$PY" -m mpitrain train --model linear --algorithm gd --lr 0.1 --steps 2 \
    --data synthetic:regression,n=100 --out "$D/lone" > "$D/lone.out" 2>&1
status=$?
set -e
[ "$status" -eq 2 ] || { cat "$D/lone.out"; fail "srun --mpi=none: status $status, expected 2"; }
[ "$(grep -c 'but MPI reports a world of 1' "$D/lone.out")" -eq 1 ] || { cat "$D/lone.out"; fail "srun --mpi=none: expected one message"; }
[ ! -e "$D/lone" ] || fail "srun --mpi=none wrote $D/lone"
say "srun --mpi=none: status 2, one message, nothing written"

# 2. A rank killed mid-training (SIGKILL to task 2 after 10 s): --kill-on-bad-exit ends the step.
t=$(date +%s)
set +e
srun -n 4 --mpi=pmi2 --kill-on-bad-exit=1 bash -c 'if [ "$SLURM_PROCID" = 2 ]; then (sleep 10; kill -9 $$) & fi
    exec "$0" -m mpitrain train --model logistic --algorithm sgd --batch-size 64 --lr 0.5 --epochs 50 --quiet \
    --data synthetic:classification,n=50000,d=20 --out "$1"' "$PY" "$D/killed" > "$D/killed.out" 2>&1
status=$?
set -e
took=$(( $(date +%s) - t ))
cat "$D/killed.out"
[ "$status" -ne 0 ] || fail "a killed rank: srun exited 0"
[ "$took" -lt 300 ] || fail "a killed rank: srun took ${took}s to end the job"
say "a killed rank: srun exited $status after ${took}s (10 s before the kill; KillWait=10)"

# 3. The doctor, under the launcher the job uses.
srun -n 4 --mpi=pmi2 "$PY" -m mpitrain doctor --out "$D/doctor" --params 10000 --seconds 0.5 > "$D/doctor.out" 2>&1 \
    || { cat "$D/doctor.out"; fail "mpitrain doctor under srun --mpi=pmi2 failed"; }
cat "$D/doctor.out"
grep -q "^PASS launch .* 4 rank(s) in one world" "$D/doctor.out" || fail "mpitrain doctor: no PASS for the launch"

# 4. The batch script: 4 tasks, USR1 to the batch shell mid-run, requeue, resume, finish.
RUN=$D/run
job=$(sbatch --parsable --chdir="$REPO" --output="$D/job-%j.out" --time=00:30:00 \
      --export=ALL,MPITRAIN_VENV="$VENV",MPITRAIN_RUN_DIR="$RUN" scripts/slurm/train.sbatch \
      --data synthetic:classification,n=50000,d=50 --epochs 3 --checkpoint-every 100 --quiet)
OUT=$D/job-$job.out
say "submitted job $job"
state() { scontrol show job "$job" | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
for _ in $(seq 240); do
    [ -s "$RUN/checkpoints/latest" ] && break
    case "$(state)" in PENDING|RUNNING|CONFIGURING) sleep 1;; *) fail "job $job ended $(state) before a checkpoint";; esac
done
[ -s "$RUN/checkpoints/latest" ] || fail "no checkpoint after 240 s"
scancel --signal=USR1 --batch "$job"
say "job $job wrote $(cat "$RUN/checkpoints/latest"); sent USR1 to its batch shell"

for _ in $(seq 600); do
    s=$(state)
    [ "$s" = COMPLETED ] || [ "$s" = FAILED ] || [ "$s" = CANCELLED ] || [ "$s" = TIMEOUT ] && break
    sleep 1
done
say "job $job ended $(state), $(scontrol show job "$job" | grep -o 'Restarts=[0-9]*')"
cat "$OUT"
[ "$(state)" = COMPLETED ] || fail "job $job ended $(state)"
grep -q "srun --mpi=pmi2" "$OUT" || fail "the script did not pick --mpi=pmi2 for the MPICH wheel"
grep -qE "mpitrain: stopped by SIG[A-Z0-9]+ on .* after step" "$OUT" || fail "no resumable stop in the output"
grep -q "exit status 75" "$OUT" || fail "no exit status 75"
grep -q "requeueing job $job" "$OUT" || fail "the job was not requeued"
grep -q "(restart 1)" "$OUT" || fail "the job did not restart"
grep -q "resum" "$OUT" || fail "the requeued job did not say it resumed"
[ "$(grep -c 'trained logistic with sgd on 4 rank(s)' "$OUT")" -eq 1 ] || fail "expected one final line from rank 0 of 4"
grep -q "rank(s)" <(grep -v "on 4 rank(s)" "$OUT") && fail "a line from a world other than 4"
"$PY" - "$RUN/summary.json" <<'EOF' || fail "summary.json"
import json, sys
summary = json.load(open(sys.argv[1]))
assert summary["world_size"] == 4, summary["world_size"]
print(f"test-slurm: summary: world_size {summary['world_size']}, steps {summary['steps']}, "
      f"train loss {summary['final_train_loss']:.6g}")
EOF
say "PASSED"
