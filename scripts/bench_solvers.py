"""Time to solution of mpitrain's solvers against scikit-learn on the same data and objective.

The driver (one process, no MPI) fits scikit-learn's LogisticRegression on all the rows in
this process with one BLAS thread, then launches each mpitrain solver as its own ``mpiexec``
job (one BLAS thread per rank) and reads back its per-iteration log. Both minimise
mean loss + (l2/2)||w||^2 (C = 1/(N l2)) with the same ``tol`` on the largest gradient entry;
the table gives iterations, the objective, and the wall and CPU time mpitrain took to come within
1e-8 (relative) of the reference objective (the lowest of the scikit-learn runs that converged).
CPU seconds say more than wall seconds on a loaded machine. The linear case times ``normal``
against one step of full-batch ``gd``. Results: OUT/solvers.json and OUT/solvers.md.

    python scripts/bench_solvers.py --ranks 2 --out docs/bench          # the full matrix
    python scripts/bench_solvers.py --tiny                               # a smoke test
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import warnings

import numpy as np

# name: (data spec, tiny data spec, model, l2, mpitrain solvers, scikit-learn (solver, max_iter) runs, raw scales).
# The first scikit-learn run is the one compared against (lbfgs); the reference objective is the
# lowest of the scikit-learn runs that converged (in the raw case, its newton-cg).
CASES = {
    "logistic-standardised": ("synthetic:classification,n=200000,d=100,noise=1",
                              "synthetic:classification,n=2000,d=10,noise=1", "logistic", 1e-4,
                              ("lbfgs", "newton-cg"), (("lbfgs", 10_000),), False),
    "logistic-raw": ("synthetic:classification,n=200000,d=100,noise=1",
                     "synthetic:classification,n=2000,d=10,noise=1", "logistic", 1e-4,
                     ("lbfgs", "newton-cg"), (("lbfgs", 10_000), ("newton-cg", 10_000)), True),
    "softmax-mnist-like": ("synthetic:classification,n=60000,d=784,classes=10,noise=1",
                           "synthetic:classification,n=1000,d=50,classes=10,noise=1", "softmax", 1e-4,
                           ("lbfgs", "newton-cg"), (("lbfgs", 10_000),), False),
    "linear-normal": ("synthetic:regression,n=1000000,d=100", "synthetic:regression,n=2000,d=10", "linear", 1e-4,
                      ("normal", "gd-pass", "gd-step"), (), False),
}
TOL = 1e-4
MAX_ITER = 20_000
TARGET = 1e-8  # relative distance to scikit-learn's objective that counts as reached
GD_STEPS = 5
THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def scales(d: int) -> np.ndarray:
    """Column scales 0.03 to 30, geometrically spaced: the ill-conditioned 'raw features' case."""
    return np.geomspace(0.03, 30, d)


def model_for(kind: str, spec: str, n_features: int):  # type: ignore[no-untyped-def]
    """The mpitrain model of a case."""
    import mpitrain as mt

    classes = int(spec.split("classes=")[1].split(",")[0]) if "classes=" in spec else 2
    return mt.create_model(kind, n_features, **({"n_classes": classes} if kind == "softmax" else {}))


def worker(case: str, solver: str, tiny: bool, target: float | None) -> None:
    """Under mpiexec: run one mpitrain solver on this rank's rows and print one JSON line on rank 0.

    The iterative solvers run with tol = 0 and stop once the largest gradient entry is at most
    TOL and the objective at most ``target`` (both, so one run gives the same-tol point and the
    time to scikit-learn's objective), or when they stop moving.
    """
    import mpitrain as mt
    from mpitrain.algorithms.lbfgs import LBFGSSolver
    from mpitrain.algorithms.newton_cg import NewtonCGSolver
    from mpitrain.algorithms.objective import Objective

    spec, tiny_spec, kind, l2, _, _, raw = CASES[case]
    comm = mt.world()
    data = mt.load(tiny_spec if tiny else spec, comm)
    if raw:
        data.X *= scales(data.n_features)
    model = model_for(kind, spec, data.n_features)
    trace: list[list[float]] = []
    comm.barrier()
    begin, begin_cpu = time.perf_counter(), time.process_time()
    if solver == "normal":  # through fit, as gd-pass: the same set-up and final checks
        theta = mt.fit(model, data, comm, "normal", l2=l2).theta
        steps = evaluations = 1
    elif solver == "gd-pass":
        theta = mt.fit(model, data, comm, mt.GD(), steps=1, lr=0.1, l2=l2).theta
        steps = evaluations = 1
    elif solver == "gd-step":
        theta = mt.fit(model, data, comm, mt.GD(), steps=GD_STEPS, lr=0.1, l2=l2).theta
        steps = evaluations = GD_STEPS
    else:
        objective = Objective(model, data, comm, l2)
        it = LBFGSSolver(objective, tol=0.0) if solver == "lbfgs" else NewtonCGSolver(objective, tol=0.0)
        it.start(model.init(0))
        steps = 0
        while not it.done and steps < MAX_ITER:
            it.step()
            steps += 1
            trace.append([time.perf_counter() - begin, it.value, it.gradient_max, objective.evaluations,
                          objective.products, time.process_time() - begin_cpu])
            if it.gradient_max <= TOL and (target is None or it.value <= target):
                break
        theta = it.theta
    seconds, cpu = time.perf_counter() - begin, time.process_time() - begin_cpu
    value = mt.evaluate(model, theta, data, comm, l2)[0]
    if comm.rank == 0:
        per = GD_STEPS if solver == "gd-step" else 1
        print(json.dumps({"seconds": seconds / per, "cpu_seconds": cpu / per, "iterations": steps,
                          "objective": value, "trace": trace}))


def reference(case: str, tiny: bool, solver: str, max_iter: int) -> dict:
    """scikit-learn on all rows in this process (one BLAS thread): wall and CPU seconds, iterations,
    whether it converged (fewer than ``max_iter`` iterations) and the objective."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    from mpitrain.data import open_source

    spec, tiny_spec, kind, l2, _, _, raw = CASES[case]
    source = open_source(tiny_spec if tiny else spec)
    X, y = source.read(0, source.n_total)
    if raw:
        X *= scales(X.shape[1])
    model = model_for(kind, spec, X.shape[1])
    clf = LogisticRegression(C=1.0 / (len(y) * l2), tol=TOL, solver=solver, max_iter=max_iter)
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning of the capped run: reported in the table
        begin, begin_cpu = time.perf_counter(), time.process_time()
        clf.fit(X, y)
        seconds, cpu = time.perf_counter() - begin, time.process_time() - begin_cpu
    coef = clf.coef_[0] if kind == "logistic" else clf.coef_.T.ravel()
    theta = np.concatenate([coef, clf.intercept_])
    loss, _ = model.sums(theta, X, y)
    objective = loss / len(y) + 0.5 * l2 * float(coef @ coef)
    iterations = int(np.max(clf.n_iter_))
    return {"solver": solver, "seconds": seconds, "cpu_seconds": cpu, "iterations": iterations,
            "converged": iterations < max_iter, "objective": objective}


def launch(case: str, solver: str, ranks: int, tiny: bool, target: float | None) -> dict:
    """Run ``worker`` under mpiexec at ``ranks`` ranks; its JSON record."""
    launcher = os.environ.get("MPIEXEC") or shutil.which("mpiexec", path=os.path.dirname(sys.executable))
    if not launcher:
        raise SystemExit("no mpiexec found: set MPIEXEC or install the mpich wheel")
    cmd = [*launcher.split(), "-n", str(ranks), sys.executable, os.path.abspath(__file__), "--worker", case,
           "--solver", solver] + (["--tiny"] if tiny else []) + ([f"--target={target!r}"] if target else [])
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **THREADS}, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def first(trace: list[list[float]], test) -> list[float] | None:  # type: ignore[no-untyped-def]
    """The first iteration's record [seconds, objective, largest gradient entry, evaluations, Hv products]
    that passes ``test``, or None."""
    return next((r for r in trace if test(r)), None)


def main() -> None:
    """Run the matrix (or, with --worker, one job of it)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    parser.add_argument("--ranks", type=int, default=2, help="world size of the mpitrain jobs (default 2)")
    parser.add_argument("--tiny", action="store_true", help="tiny data: a smoke test, not a measurement")
    parser.add_argument("--out", default="runs/bench-solvers", help="folder for solvers.json and solvers.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--solver", help=argparse.SUPPRESS)
    parser.add_argument("--target", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.solver, args.tiny, args.target)
    rows, lines = [], ["| case | solver | ranks | iterations to tol | evaluations (+ Hv) | objective at tol, relative "
                       "to the reference | seconds to the reference objective (wall / CPU) | ratio to scikit-learn "
                       "(wall / CPU) |", "|" + "---|" * 8]
    unknown = sorted(set(args.cases.split(",")) - set(CASES))
    if unknown:
        parser.error(f"unknown --cases {', '.join(unknown)}; choose from {', '.join(CASES)}")
    for case in args.cases.split(","):
        solvers, sk_runs = CASES[case][4], CASES[case][5]
        refs = [reference(case, args.tiny, solver, max_iter) for solver, max_iter in sk_runs]
        converged = [r for r in refs if r["converged"]]
        best = min(converged, key=lambda r: r["objective"]) if converged else None
        for ref in refs:
            rows.append({**ref, "case": case, "solver": f"scikit-learn {ref['solver']}", "ranks": 1})
            done = "" if ref["converged"] else " (stopped at max_iter)"
            lines.append(f"| {case} | scikit-learn {ref['solver']}{done} | 1 | {ref['iterations']} | | "
                         f"{(ref['objective'] - best['objective']) / best['objective']:+.1e} | "
                         f"{ref['seconds']:.2f} / {ref['cpu_seconds']:.2f} | 1 |")
        plain = {}
        for solver in solvers:
            target = best["objective"] * (1 + TARGET) if best else None
            run = launch(case, solver, args.ranks, args.tiny, target)
            row = {"case": case, "solver": solver, "ranks": args.ranks, **run, "load_average": os.getloadavg()[0]}
            rows.append(row)
            if not refs:
                plain[solver] = run
                lines.append(f"| {case} | {solver} | {args.ranks} | 1 | | | {run['seconds']:.3f} / "
                             f"{run['cpu_seconds']:.3f} | |")
                continue
            at_tol = first(run["trace"], lambda t: t[2] <= TOL)
            reached = first(run["trace"], lambda t: t[1] <= target)
            if at_tol is None or reached is None:
                lines.append(f"| {case} | {solver} | {args.ranks} | not reached in {run['iterations']} | | | | |")
                continue
            sk = refs[0]
            bound = "" if sk["converged"] else "<= "
            row["ratio"] = [reached[0] / sk["seconds"], reached[5] / sk["cpu_seconds"]]
            products = f" (+{at_tol[4]})" if at_tol[4] else ""
            lines.append(f"| {case} | {solver} | {args.ranks} | {run['trace'].index(at_tol) + 1} | {at_tol[3]}{products} "
                         f"| {(at_tol[1] - best['objective']) / best['objective']:+.1e} | "
                         f"{reached[0]:.2f} / {reached[5]:.2f} | {bound}{row['ratio'][0]:.2f} / {bound}{row['ratio'][1]:.2f} |")
        for gd in ("gd-pass", "gd-step"):
            if "normal" in plain and gd in plain:
                wall = plain["normal"]["seconds"] / plain[gd]["seconds"]
                cpu = plain["normal"]["cpu_seconds"] / plain[gd]["cpu_seconds"]
                lines.append(f"| {case} | normal / {gd} | {args.ranks} | | | | {wall:.2f}x / {cpu:.2f}x | |")
    table = "\n".join(lines)
    print(table)
    os.makedirs(args.out, exist_ok=True)
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.platform(), "cores": len(os.sched_getaffinity(0)), "load_average": os.getloadavg(),
            "ranks": args.ranks, "tol": TOL, "tiny": args.tiny, "threads": THREADS}
    with open(os.path.join(args.out, "solvers.json"), "w") as f:
        json.dump({**meta, "cases": {k: CASES[k][:4] for k in args.cases.split(",")}, "rows": rows}, f, indent=1)
    with open(os.path.join(args.out, "solvers.md"), "w") as f:
        f.write(f"Measured {meta['date']} on {meta['cores']} cores (load average {meta['load_average'][0]:.1f} "
                f"at the end), tol = {TOL}; CPU seconds are rank 0's.\n\n{table}\n")


if __name__ == "__main__":
    main()
