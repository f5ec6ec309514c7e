"""Sparse against dense training on a generated LIBSVM file, and scikit-learn on one core.

    mpiexec -n 2 python scripts/bench_sparse.py --rows 20000 --features 100000 --nnz 20 --out sparse.json

Writes the file (rank 0), trains logistic regression with full-batch GD on the sparse rows, and
on dense rows when their size is under --dense-limit-gb (else the dense size is reported, not
run); rank 0 then fits scikit-learn's SGDClassifier (log loss) and LogisticRegression on one
core. Prints a table and writes JSON. Memory is the bytes of each rank's rows (CSR: data,
indices and indptr; dense: n x d x 8).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import mpitrain as mt


def write_libsvm(path: str, rows: int, features: int, nnz: int, seed: int) -> None:
    """Rows with ``nnz`` random features each and labels from a sparse true weight vector."""
    rng = np.random.default_rng(seed)
    truth = rng.standard_normal(features)
    with open(path, "w") as f:
        for _ in range(rows):
            cols = np.sort(rng.choice(features, nnz, replace=False))
            vals = rng.standard_normal(nnz)
            label = "+1" if vals @ truth[cols] > 0 else "-1"
            f.write(label + " " + " ".join(f"{c + 1}:{v:.6g}" for c, v in zip(cols.tolist(), vals.tolist())) + "\n")


def rows_bytes(X) -> int:  # type: ignore[no-untyped-def]
    """Bytes held by this rank's rows."""
    return X.nbytes if isinstance(X, np.ndarray) else X.data.nbytes + X.indices.nbytes + X.indptr.nbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--features", type=int, default=100000)
    parser.add_argument("--nnz", type=int, default=20, help="non-zeros per row")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=2.0)
    parser.add_argument("--l2", type=float, default=1e-5)
    parser.add_argument("--dense-limit-gb", type=float, default=2.0)
    parser.add_argument("--file", default="bench-sparse.svm")
    parser.add_argument("--out", default="bench-sparse.json")
    args = parser.parse_args()
    comm = mt.world()
    if comm.rank == 0 and not os.path.exists(args.file):
        write_libsvm(args.file, args.rows, args.features, args.nnz, 0)
    comm.barrier()
    results = {"rows": args.rows, "features": args.features, "density": args.nnz / args.features,
               "ranks": comm.size, "steps": args.steps}
    dense_gb = args.rows * args.features * 8 / 2**30
    for kind in ("sparse", "dense"):
        if kind == "dense" and dense_gb > args.dense_limit_gb:
            results["dense"] = {"skipped": f"dense rows would take {dense_gb:.1f} GiB"}
            continue
        t0 = time.perf_counter()
        data = mt.load(args.file, comm, sparse=kind == "sparse", n_features=args.features)
        mt.encode_labels(data, comm)
        loaded = time.perf_counter() - t0
        model = mt.create_model("logistic", data.n_features)
        t0 = time.perf_counter()
        result = mt.fit(model, data, comm, "gd", mt.Settings(steps=args.steps, lr=args.lr, l2=args.l2))
        seconds = float(comm.Allreduce(np.array([time.perf_counter() - t0]), "max")[0])
        _, accuracy = mt.evaluate(model, result.theta, data, comm, args.l2)
        memory = int(comm.Allreduce(np.array([rows_bytes(data.X)], dtype=np.int64))[0])
        results[kind] = {"load_seconds": loaded, "train_seconds": seconds, "train_accuracy": accuracy,
                         "rows_bytes_all_ranks": memory}
    if comm.rank == 0:
        from sklearn.datasets import load_svmlight_file
        from sklearn.linear_model import LogisticRegression, SGDClassifier
        from threadpoolctl import threadpool_limits

        X, y = load_svmlight_file(args.file, n_features=args.features)
        X.indices, X.indptr = X.indices.astype(np.int32), X.indptr.astype(np.int32)  # what the estimators accept
        with threadpool_limits(1):
            for name, estimator in (("sklearn SGDClassifier", SGDClassifier(loss="log_loss", alpha=args.l2, max_iter=20,
                                                                             tol=None, random_state=0)),
                                    ("sklearn LogisticRegression", LogisticRegression(C=1 / (args.rows * args.l2),
                                                                                      max_iter=args.steps))):
                t0 = time.perf_counter()
                estimator.fit(X, y)
                results[name] = {"train_seconds": time.perf_counter() - t0, "train_accuracy": estimator.score(X, y)}
        print(f"{args.rows} rows x {args.features} features, {args.nnz} non-zeros per row, {comm.size} rank(s)")
        print(f"{'run':28} {'train s':>9} {'accuracy':>9} {'rows MiB':>10}")
        for name in ("sparse", "dense", "sklearn SGDClassifier", "sklearn LogisticRegression"):
            r = results[name]
            if "skipped" in r:
                print(f"{'mpitrain ' + name:28} {r['skipped']}")
                continue
            mib = f"{r['rows_bytes_all_ranks'] / 2**20:10.1f}" if "rows_bytes_all_ranks" in r else f"{'':>10}"
            label = name if name.startswith("sklearn") else f"mpitrain {name}"
            print(f"{label:28} {r['train_seconds']:9.2f} {r['train_accuracy']:9.4f} {mib}")
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
