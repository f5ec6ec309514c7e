"""The same numbers in every format give the same rows on every rank and bitwise the same model."""
import gzip
import os
import tempfile

import numpy as np
import pytest
from mpi4py import MPI

import mpitrain as mt
from mpitrain.data import block_bounds

pytestmark = pytest.mark.mpi

N, D = 97, 4
FORMATS = ["csv", "pandas-index", "pandas-headerless", "headerless", "csv.gz", "tsv", "libsvm", "parquet", "hdf5", "npy", "npz",
           "npz-compressed", "csv-parts", "parquet-parts"]
NEEDS = {"pandas-index": "pandas", "pandas-headerless": "pandas", "parquet": "pyarrow", "parquet-parts": "pyarrow", "hdf5": "h5py",
         "libsvm": "sklearn"}


def numbers():
    """Rows with some zeros (so that LIBSVM leaves cells out) and 0/1 labels."""
    rng = np.random.default_rng(11)
    X = rng.standard_normal((N, D)) * 10.0 ** rng.integers(-3, 4, (N, D))
    X[rng.random((N, D)) < 0.3] = 0.0
    return X, (X @ [1.0, -1.0, 0.5, 0.0] + rng.standard_normal(N) > 0).astype(float)


def text_rows(X, y, sep=","):
    return "".join(sep.join(repr(v) for v in row) + sep + repr(label) + "\n" for row, label in zip(X.tolist(), y.tolist()))


def write(kind, folder, X, y):
    """Write the rows as ``kind`` into ``folder``; return the spec and the load keywords."""
    header = "a,b,c,d,y\n"
    path = os.path.join(folder, "data")
    if kind == "csv":
        open(path + ".csv", "w").write(header + text_rows(X, y))
        return path + ".csv", {}
    if kind == "pandas-index":
        import pandas as pd

        pd.DataFrame(np.c_[X, y], columns=list("abcdy")).to_csv(path + ".csv")
        return path + ".csv", {}
    if kind == "pandas-headerless":  # its index, 0, 1, 2, ..., is found and left out without a flag
        import pandas as pd

        pd.DataFrame(np.c_[X, y]).to_csv(path + ".csv", header=False)
        return path + ".csv", {}
    if kind == "headerless":
        open(path + ".csv", "w").write(text_rows(X, y))
        return path + ".csv", {"header": False}
    if kind == "csv.gz":
        with gzip.open(path + ".csv.gz", "wt") as f:
            f.write(header + text_rows(X, y))
        return path + ".csv.gz", {}
    if kind == "tsv":
        open(path + ".tsv", "w").write(header.replace(",", "\t") + text_rows(X, y, "\t"))
        return path + ".tsv", {}
    if kind == "libsvm":
        lines = [f"{int(label):+d} " + " ".join(f"{j + 1}:{v!r}" for j, v in enumerate(row) if v != 0)
                 for row, label in zip(X.tolist(), (2 * y - 1).tolist())]
        open(path + ".svm", "w").write("\n".join(lines) + "\n")
        return path + ".svm", {"sparse": False}
    if kind in ("parquet", "parquet-parts"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({**{c: X[:, i] for i, c in enumerate("abcd")}, "y": y})
        if kind == "parquet":
            pq.write_table(table, path + ".parquet", row_group_size=10)
            return path + ".parquet", {}
        os.mkdir(path)
        for i, (a, b) in enumerate([(0, 40), (40, 41), (41, N)]):
            pq.write_table(table.slice(a, b - a), os.path.join(path, f"part-{i:05d}.parquet"), row_group_size=7)
        open(os.path.join(path, "_SUCCESS"), "w").close()
        return path, {}
    if kind == "hdf5":
        import h5py

        with h5py.File(path + ".h5", "w") as f:
            f["features"], f["target"] = X, y
        return path + ".h5:features,target", {}
    if kind == "npy":
        os.mkdir(path)
        np.save(os.path.join(path, "X.npy"), X)
        np.save(os.path.join(path, "y.npy"), y)
        return path, {}
    if kind in ("npz", "npz-compressed"):
        (np.savez if kind == "npz" else np.savez_compressed)(path + ".npz", X=X, y=y)
        return path + ".npz", {}
    if kind == "csv-parts":
        os.mkdir(path)
        for i, (a, b) in enumerate([(0, 30), (30, 30), (30, 90), (90, N)]):
            open(os.path.join(path, f"part-{i:05d}.csv"), "w").write(header + text_rows(X[a:b], y[a:b]))
        return path, {}
    raise AssertionError(kind)


@pytest.fixture(scope="module")
def folder():
    path = tempfile.mkdtemp() if MPI.COMM_WORLD.rank == 0 else None
    yield MPI.COMM_WORLD.bcast(path, root=0)
    MPI.COMM_WORLD.Barrier()


def train(comm, data):
    model = mt.create_model("logistic", data.n_features)
    return mt.fit(model, data, comm, "gd", mt.Settings(steps=25, lr=0.5, l2=1e-3, allreduce="ordered")).theta


@pytest.mark.parametrize("kind", FORMATS)
def test_every_format_gives_the_same_rows_and_bitwise_the_same_model(comm, folder, kind):
    if kind in NEEDS:
        pytest.importorskip(NEEDS[kind])
    X, y = numbers()
    where = os.path.join(folder, kind)
    spec, options = None, None
    if comm.rank == 0:
        os.mkdir(where)
        spec, options = write(kind, where, X, y)
    spec, options = MPI.COMM_WORLD.bcast((spec, options), root=0)
    data = mt.load(spec, comm, **options)
    if kind == "libsvm":
        classes = mt.encode_labels(data, comm)  # -1/+1 become classes 0/1
        assert list(classes) == [-1.0, 1.0]
    a, b = block_bounds(N, comm.size, comm.rank)
    same = np.array_equal(data.X, X[a:b]) and np.array_equal(data.y, y[a:b]) and data.n_total == N
    assert MPI.COMM_WORLD.allreduce(same, op=MPI.LAND)
    reference = train(comm, mt.Dataset(X[a:b].copy(), y[a:b].copy(), a, N, "memory", data.counts))
    assert MPI.COMM_WORLD.allreduce(np.array_equal(train(comm, data), reference), op=MPI.LAND)


@pytest.mark.parametrize("model_name, algorithm", [("logistic", "gd"), ("logistic", "sgd"), ("softmax", "sgd"),
                                                   ("linear", "gd"), ("mlp", "sgd")])
def test_sparse_rows_train_the_model_of_their_dense_copy(comm, folder, model_name, algorithm):
    pytest.importorskip("sklearn")
    X, y = numbers()
    X = X / np.abs(X).max(axis=0)  # columns of one scale, so that one learning rate suits every model
    where = os.path.join(folder, f"sparse-{model_name}-{algorithm}")
    spec = None
    if comm.rank == 0:
        os.mkdir(where)
        spec, _ = write("libsvm", where, X, y)
    spec = MPI.COMM_WORLD.bcast(spec, root=0)
    sparse, dense = mt.load(spec, comm), mt.load(spec, comm, sparse=False)
    assert MPI.COMM_WORLD.allreduce(not isinstance(sparse.X, np.ndarray) and isinstance(dense.X, np.ndarray),
                                    op=MPI.LAND)
    thetas = []
    for data in (sparse, dense):
        classes = mt.encode_labels(data, comm)
        options = {"n_classes": classes.size} if model_name == "softmax" else ({"hidden": (5,), "n_classes": 2}
                                                                              if model_name == "mlp" else {})
        model = mt.create_model(model_name, data.n_features, **options)
        batch = {"batch_size": 16} if algorithm == "sgd" else {}
        thetas.append(mt.fit(model, data, comm, algorithm, mt.Settings(steps=30, lr=0.3, l2=1e-3, **batch)).theta)
    close = np.allclose(thetas[0], thetas[1], rtol=1e-9, atol=1e-12) and np.isfinite(thetas[0]).all()
    assert MPI.COMM_WORLD.allreduce(bool(close), op=MPI.LAND)


@pytest.mark.parametrize("n", [1, 2, 5, 41])
def test_sparse_rows_are_scaled_as_standard_scaler_without_centring(comm, n):
    sparse = pytest.importorskip("scipy.sparse")
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, 6)) * [1.0, 100.0, 1e-3, 1.0, 5.0, 0.0]  # the last feature is 0 everywhere
    X[rng.random((n, 6)) < 0.6] = 0.0
    a, b = block_bounds(n, comm.size, comm.rank)
    counts = np.array([np.diff(block_bounds(n, comm.size, r)) for r in range(comm.size)]).ravel()
    train = mt.Dataset(sparse.csr_matrix(X[a:b]), np.zeros(b - a), a, n, "mem", counts)
    test = mt.Dataset(sparse.csr_matrix(X[::-1][a:b]), np.zeros(b - a), a, n, "mem", counts)
    mean, scale = mt.standardize(train, comm, test)
    scaler = preprocessing.StandardScaler(with_mean=False).fit(sparse.csr_matrix(X))
    good = (not mean.any() and np.allclose(scale, scaler.scale_, rtol=1e-12, atol=0)
            and sparse.issparse(train.X) and train.X.nnz == np.count_nonzero(X[a:b])
            and np.allclose(train.X.toarray(), scaler.transform(X)[a:b], rtol=1e-12, atol=0)
            and np.allclose(test.X.toarray(), scaler.transform(X[::-1])[a:b], rtol=1e-12, atol=0))
    assert MPI.COMM_WORLD.allreduce(bool(good), op=MPI.LAND)
