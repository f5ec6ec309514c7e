"""``python -m mpitrain doctor``: check a launch before a long job, under the launcher the job uses.

Every check prints PASS, WARN or FAIL with the fix, on one screen, from rank 0:

- launch: the launcher and the MPI that mpi4py loads match, and every rank sees the whole world;
- threads: ranks per node x BLAS threads against the node's cores;
- slurm: the PMI srun used, whether the batch shell forwards the time-limit signal, and
  ``--time`` against the signal lead;
- out: the umask, and whether the output directory is writable from every rank;
- allreduce: the table ``--allreduce auto`` follows, and a timed probe at the gradient's size.

The exit status is 2 when a check fails, else 0.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import time
from typing import Optional

import numpy as np

from . import _mpi, collectives, guard
from .collectives import auto, plan
from .comm import Comm

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
DEFAULT_SIGNAL_LEAD = 300  # seconds, as in scripts/slurm/train.sbatch's --signal=B:USR1@300


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The ``doctor`` subcommand and its flags."""
    doctor = sub.add_parser("doctor", help="check a launch (run it under the job's launcher): PASS/WARN/FAIL "
                                           "with the fix")
    doctor.add_argument("--out", default=".", metavar="DIR",
                        help="the output directory the job will use (checked for writing from every rank)")
    doctor.add_argument("--params", type=int, default=100_000, metavar="N",
                        help="gradient size of the allreduce probe, in parameters (default 100000)")
    doctor.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    doctor.add_argument("--seconds", type=float, default=1.0, help="length of the allreduce probe (default 1)")


def library() -> str:
    """The first line of the MPI library's version string."""
    return _mpi.init().Get_library_version().replace("\0", "").strip().splitlines()[0]


def family(name: str) -> str:
    """"Open MPI", "MPICH" (also Intel MPI, MVAPICH, Cray) or "other" for a library version line."""
    if "Open MPI" in name:
        return "Open MPI"
    if any(word in name for word in ("MPICH", "Intel(R) MPI", "MVAPICH", "CRAY MPICH")):
        return "MPICH"
    return "other"


SRUN_MPI = {"Open MPI": "pmix", "MPICH": "pmi2"}


def rank_facts(comm: Comm, out: str) -> dict:
    """What this rank sees: host, launcher variables, cores, threads, umask, --out writability."""
    ranks_on_node = comm.ranks_on_node()
    guard.limit_blas_threads(ranks_on_node)  # what train does
    mask = os.umask(0)
    os.umask(mask)
    probe = os.path.join(out, f".mpitrain-doctor-{comm.rank}")
    try:
        os.makedirs(out, exist_ok=True)
        with open(probe, "w") as f:
            f.write("ok\n")
        os.remove(probe)
        write_error = ""
    except OSError as exc:
        write_error = exc.strerror or str(exc)
    sizes = {size_var: os.environ[size_var] for _, size_var, _ in guard.LAUNCHERS if size_var in os.environ}
    return {"host": socket.gethostname(), "ranks_on_node": ranks_on_node, "cores": guard.usable_cores(),
            "threads": guard.blas_threads(), "umask": mask, "write_error": write_error, "sizes": sizes}


def check_launch(size: int, facts: list[dict], lib: str) -> tuple[str, str]:
    """The launcher started as many tasks as MPI sees, on every rank, with a matching PMI."""
    message, _ = guard.launch_mismatch(size)
    if message:
        return FAIL, message
    launched = {v for f in facts for v in f["sizes"].values()}
    if launched - {str(size)}:
        return FAIL, (f"the launcher's task counts {sorted(launched)} differ from the world of {size}: start every "
                      f"rank with one launcher of {family(lib)}")
    how = ", ".join(sorted({k for f in facts for k in f["sizes"]})) or "no launcher variables: a single process"
    return PASS, f"{size} rank(s) in one world on {family(lib)} ({how})"


def check_threads(facts: list[dict]) -> tuple[str, str]:
    """Ranks per node x BLAS threads against the cores, on the busiest node."""
    worst = max(facts, key=lambda f: f["ranks_on_node"] * f["threads"] / f["cores"])
    ranks, threads, cores, host = worst["ranks_on_node"], worst["threads"], worst["cores"], worst["host"]
    used = f"{host}: {ranks} rank(s) x {threads} BLAS thread(s) on {cores} core(s)"
    if ranks > cores:
        throttled = os.environ.get("MPIR_CVAR_CH4_PROGRESS_THROTTLE")
        return WARN, (f"{used}: more ranks than cores; " + ("MPICH yields while it waits (PROGRESS_THROTTLE set)"
                      if throttled else "with MPICH set MPIR_CVAR_CH4_PROGRESS_THROTTLE=true "
                      "MPIR_CVAR_POLLS_BEFORE_YIELD=1, or start fewer ranks per node"))
    if ranks * threads > cores:
        return WARN, f"{used}: they compete for cores; set OMP_NUM_THREADS={max(1, cores // ranks)}"
    return PASS, used


def check_slurm_pmi(lib: str) -> Optional[tuple[str, str]]:
    """Under srun: the --mpi plugin against the MPI family; None outside a Slurm step."""
    if "SLURM_STEP_ID" not in os.environ and "SLURM_STEPID" not in os.environ:
        return None
    used, wanted = os.environ.get("SLURM_MPI_TYPE", "none"), SRUN_MPI.get(family(lib))
    if wanted and not used.startswith(wanted):
        return FAIL, f"srun --mpi={used} with {family(lib)}: use srun --mpi={wanted} (or MpiDefault={wanted})"
    return PASS, f"srun --mpi={used} with {family(lib)}"


def check_slurm_signals() -> Optional[tuple[str, str]]:
    """In a batch job: does the batch shell forward the time-limit signal to the job step?"""
    if "SLURM_JOB_ID" not in os.environ or "SLURM_STEP_ID" not in os.environ:
        return None
    if os.environ.get("MPITRAIN_BATCH_FORWARDS"):
        return PASS, f"the batch shell forwards {os.environ['MPITRAIN_BATCH_FORWARDS']} to srun (train.sbatch's trap)"
    return WARN, ("not started by scripts/slurm/train.sbatch: with #SBATCH --signal=B:USR1@300 Slurm signals only the "
                  "batch shell, which must trap USR1 and `kill -USR1` the srun (see train.sbatch); "
                  "--signal=USR1@300 (no B:) signals the ranks directly but then nothing requeues the job")


def time_limit() -> Optional[int]:
    """The job's time limit in seconds (None: unknown or unlimited), from train.sbatch or squeue."""
    if os.environ.get("MPITRAIN_TIME_LIMIT", "").isdigit():
        return int(os.environ["MPITRAIN_TIME_LIMIT"])
    try:
        text = subprocess.run(["squeue", "-h", "-j", os.environ["SLURM_JOB_ID"], "-o", "%l"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    days, _, clock = text.rpartition("-")
    parts = clock.split(":")
    if not all(p.isdigit() for p in parts) or not 2 <= len(parts) <= 3 or (days and not days.isdigit()):
        return None
    h, m, s = ([0] * (3 - len(parts)) + [int(p) for p in parts])
    return int(days or 0) * 86400 + h * 3600 + m * 60 + s


def check_time_limit() -> Optional[tuple[str, str]]:
    """Under Slurm: --time against the signal lead (MPITRAIN_SIGNAL_LEAD, default 300 s)."""
    if "SLURM_JOB_ID" not in os.environ:
        return None
    lead = int(os.environ.get("MPITRAIN_SIGNAL_LEAD", DEFAULT_SIGNAL_LEAD))
    limit = time_limit()
    if limit is None:
        return PASS, "no time limit found (unlimited, or squeue unavailable)"
    if limit < 2 * lead:
        return FAIL, (f"--time {limit}s leaves less than the {lead}s signal lead to train: each requeue makes almost "
                      f"no progress; give --time of at least {4 * lead}s, or a smaller --signal lead")
    if limit < 4 * lead:
        return WARN, f"--time {limit}s is under 4x the {lead}s signal lead: a quarter or more of each job is the lead"
    return PASS, f"--time {limit}s against a {lead}s signal lead"


def check_out(out: str, facts: list[dict]) -> tuple[str, str]:
    """The umask lets the owner write, and every rank can write into ``out``."""
    bad = [f"rank {r} on {f['host']}: {f['write_error']}" for r, f in enumerate(facts) if f["write_error"]]
    mask = facts[0]["umask"]
    if facts[0]["write_error"]:
        return FAIL, f"rank 0 cannot write into {out!r} ({'; '.join(bad[:3])}): choose another --out"
    if mask & 0o200:
        return FAIL, f"umask {mask:03o} takes away the owner's write permission: set umask 022 (or 077)"
    if bad:
        return WARN, (f"only rank 0 writes there, but {len(bad)} rank(s) cannot ({'; '.join(bad[:3])}): "
                      "use a shared directory to read checkpoints from every node")
    return PASS, f"{out!r} writable from all {len(facts)} rank(s); umask {mask:03o}"


def probe_allreduce(comm: Comm, n: int, dtype: str, seconds: float) -> tuple[str, str]:
    """Time ``--allreduce auto`` on a buffer of n values for about ``seconds`` (collective)."""
    nbytes = n * np.dtype(dtype).itemsize
    chosen = plan(nbytes, comm=comm)
    level, (rows, source) = comm.thread_level, auto.table()
    key = auto.key(comm.size, comm.nodes()[2] if comm.size > 1 else 1)
    table = (f"the allreduce table ({source}) has rows for {key} ranks at {level}" if key in rows.get(level, {})
             else f"the allreduce table ({source}) has no rows for {key} ranks at {level}: auto uses the cost model")
    buf = np.ones(n, dtype=dtype)
    collectives.allreduce(buf, algorithm="auto", comm=comm)  # warm-up (and auto's plan)
    calls, batch, elapsed = 0, 1, 0.0
    while elapsed < seconds:  # batches of 1, 2, 4, ... calls; every rank agrees on the elapsed time
        t0 = time.perf_counter()
        for _ in range(batch):
            collectives.allreduce(buf, algorithm="auto", comm=comm)
        elapsed += comm.Allreduce(np.array([time.perf_counter() - t0]), "max")[0]
        calls, batch = calls + batch, 2 * batch
    per_call = elapsed / calls
    busbw = 2 * (comm.size - 1) / comm.size * nbytes / per_call / 1e9 if comm.size > 1 else 0.0
    return PASS, (f"{n} {dtype} ({nbytes / 1e6:.2f} MB): auto picks {chosen}; {per_call * 1e6:.0f} us per call over "
                  f"{calls} calls ({busbw:.3g} GB/s bus bandwidth); {table}")


def run(args: argparse.Namespace, comm: Comm) -> int:
    """Run every check (collective); rank 0 prints the report. Returns 2 if a check failed, else 0."""
    facts = [json.loads(text) for text in comm.gather_text(json.dumps(rank_facts(comm, args.out)))]
    lib = library()
    results = [("launch", check_launch(comm.size, facts, lib)), ("threads", check_threads(facts)),
               ("slurm pmi", check_slurm_pmi(lib)), ("signals", check_slurm_signals()),
               ("time", check_time_limit()), ("out", check_out(args.out, facts)),
               ("allreduce", probe_allreduce(comm, args.params, args.dtype, args.seconds))]
    results = [(name, found) for name, found in results if found is not None]
    _, first_task = guard.launch_mismatch(comm.size)
    if comm.rank == 0 and first_task:
        hosts = len({f["host"] for f in facts})
        print(f"mpitrain doctor: {comm.size} rank(s) on {hosts} node(s); {lib}", flush=True)
        for name, (status, text) in results:
            print(f"{status} {name:<10} {text}", flush=True)
    return 2 if any(status == FAIL for _, (status, _) in results) else 0
