"""Sparse against dense training on the same rows, and scikit-learn on one core.

    mpiexec -n 2 python scripts/bench_sparse.py --rows 20000 --features 2000 --nnz 20 --out sparse.json

Rank 0 generates the rows once and writes them twice: as a LIBSVM file (values written exactly,
with repr) and, when the dense rows fit under --dense-limit-gb, as a directory of dense X.npy and
y.npy. Every rank then trains logistic regression with full-batch GD on the LIBSVM rows kept
sparse (CSR), and on the dense npy rows. Rank 0 last fits scikit-learn's SGDClassifier (log loss)
and LogisticRegression on one core, on the CSR rows and on the dense rows. Prints a table and
writes JSON.

Per run: load and train wall seconds (the slowest rank), train CPU seconds (summed over ranks),
the bytes of the rows (CSR: data, indices and indptr; dense: n x d x 8, over all ranks), and the
peak memory that NumPy and Python allocated while loading and training (tracemalloc, the largest
rank; a second load, as tracemalloc slows the parsing that the timed load does). The two mpitrain models are compared: the same rows must give the same model up to
rounding.
"""
from __future__ import annotations

import argparse
import json
import os
import time
import tracemalloc

import numpy as np

import mpitrain as mt


def generate(rows: int, features: int, nnz: int, seed: int):  # type: ignore[no-untyped-def]
    """CSR rows with ``nnz`` random features each, and labels -1/+1 from a dense true weight vector."""
    import scipy.sparse

    rng = np.random.default_rng(seed)
    truth = rng.standard_normal(features)
    cols = np.sort(np.stack([rng.choice(features, nnz, replace=False) for _ in range(rows)]), axis=1)
    vals = rng.standard_normal((rows, nnz))
    X = scipy.sparse.csr_matrix((vals.ravel(), cols.ravel(), np.arange(0, rows * nnz + 1, nnz)), shape=(rows, features))
    y = np.where(X @ truth > 0, 1.0, -1.0)
    return X, y


def write(X, y, svm: str, npy: str, dense: bool) -> None:  # type: ignore[no-untyped-def]
    """The rows as LIBSVM (1-based indices, exact values) and, with ``dense``, as X.npy and y.npy."""
    with open(svm, "w") as f:
        for i in range(X.shape[0]):
            lo, hi = X.indptr[i], X.indptr[i + 1]
            cells = " ".join(f"{c + 1}:{v!r}" for c, v in zip(X.indices[lo:hi].tolist(), X.data[lo:hi].tolist()))
            f.write(f"{int(y[i]):+d} {cells}\n")
    if dense:
        os.makedirs(npy, exist_ok=True)
        np.save(os.path.join(npy, "X.npy"), X.toarray())
        np.save(os.path.join(npy, "y.npy"), y)


def rows_bytes(X) -> int:  # type: ignore[no-untyped-def]
    """Bytes held by this rank's rows."""
    return X.nbytes if isinstance(X, np.ndarray) else X.data.nbytes + X.indices.nbytes + X.indptr.nbytes


def run_mpitrain(spec: str, comm, args):  # type: ignore[no-untyped-def]
    """Load SPEC (timed), load it again while tracing memory, and train on it (timed, traced); the
    numbers of the table and the parameters."""
    t0 = time.perf_counter()
    mt.load(spec, comm, n_features=args.features)
    loaded = float(comm.Allreduce(np.array([time.perf_counter() - t0]), "max")[0])
    tracemalloc.start()  # its bookkeeping slows Python code: the timed load above runs without it
    data = mt.load(spec, comm, n_features=args.features)
    mt.encode_labels(data, comm)
    model = mt.create_model("logistic", data.n_features)
    t0, c0 = time.perf_counter(), time.process_time()
    result = mt.fit(model, data, comm, "gd", mt.Settings(steps=args.steps, lr=args.lr, l2=args.l2))
    cpu = float(comm.Allreduce(np.array([time.process_time() - c0]))[0])
    seconds = float(comm.Allreduce(np.array([time.perf_counter() - t0]), "max")[0])
    peak = int(comm.Allreduce(np.array([tracemalloc.get_traced_memory()[1]], dtype=np.int64), "max")[0])
    tracemalloc.stop()
    _, accuracy = mt.evaluate(model, result.theta, data, comm, args.l2)
    memory = int(comm.Allreduce(np.array([rows_bytes(data.X)], dtype=np.int64))[0])
    return {"load_seconds": loaded, "train_seconds": seconds, "train_cpu_seconds_all_ranks": cpu,
            "train_accuracy": accuracy, "rows_bytes_all_ranks": memory, "peak_traced_bytes_per_rank": peak}, result.theta


def run_sklearn(X, y, args) -> dict:  # type: ignore[no-untyped-def]
    """scikit-learn's SGDClassifier and LogisticRegression on one core (rank 0)."""
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from threadpoolctl import threadpool_limits

    out = {}
    with threadpool_limits(1):
        for name, estimator in (("SGDClassifier", SGDClassifier(loss="log_loss", alpha=args.l2, max_iter=20, tol=None,
                                                                random_state=0)),
                                ("LogisticRegression", LogisticRegression(C=1 / (args.rows * args.l2), max_iter=args.steps))):
            t0, c0 = time.perf_counter(), time.process_time()
            estimator.fit(X, y)
            out[name] = {"train_seconds": time.perf_counter() - t0, "train_cpu_seconds_all_ranks": time.process_time() - c0,
                         "train_accuracy": estimator.score(X, y)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--features", type=int, default=2000)
    parser.add_argument("--nnz", type=int, default=20, help="non-zeros per row")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=2.0)
    parser.add_argument("--l2", type=float, default=1e-5)
    parser.add_argument("--dense-limit-gb", type=float, default=2.0)
    parser.add_argument("--dir", default="bench-sparse", help="where the generated files go (reused if present)")
    parser.add_argument("--out", default="bench-sparse.json")
    args = parser.parse_args()
    comm = mt.world()
    import sklearn.datasets  # noqa: F401  (imported before tracemalloc starts: the LIBSVM reader)

    dense_gb = args.rows * args.features * 8 / 2**30
    dense = dense_gb <= args.dense_limit_gb
    stem = os.path.join(args.dir, f"{args.rows}x{args.features}-{args.nnz}")
    svm, npy = stem + ".svm", stem + "-npy"
    X = y = None
    if comm.rank == 0:
        X, y = generate(args.rows, args.features, args.nnz, 0)
        if not os.path.exists(svm):
            os.makedirs(args.dir, exist_ok=True)
            write(X, y, svm, npy, dense)
    comm.barrier()
    results = {"rows": args.rows, "features": args.features, "density": args.nnz / args.features, "ranks": comm.size,
               "steps": args.steps, "load_average": os.getloadavg(), "cpus": os.cpu_count()}
    results["mpitrain sparse (LIBSVM)"], theta_sparse = run_mpitrain(svm, comm, args)
    if dense:
        results["mpitrain dense (npy)"], theta_dense = run_mpitrain(npy, comm, args)
        results["max relative difference of the two models"] = float(
            np.max(np.abs(theta_sparse - theta_dense)) / np.max(np.abs(theta_dense)))
    else:
        results["mpitrain dense (npy)"] = {"skipped": f"dense rows would take {dense_gb:.1f} GiB"}
    if comm.rank == 0:
        X.indices, X.indptr = X.indices.astype(np.int32), X.indptr.astype(np.int32)  # what the estimators accept
        for name, r in run_sklearn(X, y, args).items():
            results[f"sklearn {name} (CSR)"] = r
        if dense:
            for name, r in run_sklearn(X.toarray(), y, args).items():
                results[f"sklearn {name} (dense)"] = r
        report(results, args)
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


def report(results: dict, args) -> None:  # type: ignore[no-untyped-def]
    """The table."""
    print(f"{args.rows} rows x {args.features} features, {args.nnz} non-zeros per row "
          f"({100 * results['density']:.2g}%), {results['ranks']} rank(s), {args.steps} GD steps; "
          f"load average {results['load_average'][0]:.1f} on {results['cpus']} CPUs")
    print(f"{'run':36} {'load s':>7} {'train s':>8} {'CPU s':>7} {'accuracy':>9} {'rows MiB':>9} {'peak MiB':>9}")
    for name, r in results.items():
        if not isinstance(r, dict):
            continue
        if "skipped" in r:
            print(f"{name:36} {r['skipped']}")
            continue
        cells = [f"{r['load_seconds']:7.2f}" if "load_seconds" in r else f"{'':>7}",
                 f"{r['train_seconds']:8.2f}", f"{r['train_cpu_seconds_all_ranks']:7.2f}", f"{r['train_accuracy']:9.4f}"]
        for key in ("rows_bytes_all_ranks", "peak_traced_bytes_per_rank"):
            cells.append(f"{r[key] / 2**20:9.1f}" if key in r else f"{'':>9}")
        print(f"{name:36} {' '.join(cells)}")
    if "max relative difference of the two models" in results:
        print(f"sparse and dense models: max |difference| / max |theta| = "
              f"{results['max relative difference of the two models']:.2e}")


if __name__ == "__main__":
    main()
