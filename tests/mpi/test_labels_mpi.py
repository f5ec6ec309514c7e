"""Labels over MPI: classes found together, gapped/-1,+1/text labels, files without a header or
with pandas' index, and a model file whose schema Python applies as the command line does."""
import os

import numpy as np
import pytest
from mpi4py import MPI

import mpitrain as mt
from mpitrain.data import block_bounds
from mpitrain.data.labels import find_classes, numbers_if_all_ranks_can
from mpitrain.outputs import write_npz
from test_data_mpi import on_rank0, shared_dir  # noqa: F401 - a fixture and a helper shared with the data tests

pytestmark = pytest.mark.mpi


def everywhere(flag: bool) -> bool:
    """True on every rank if ``flag`` is true on every rank."""
    return MPI.COMM_WORLD.allreduce(bool(flag), op=MPI.LAND)


def test_classes_are_the_sorted_labels_of_all_ranks(comm):
    # Each rank sees different labels, some none at all: only the union is right.
    mine = {0: [100.0, 1.0], 1: [0.0, 0.0], 2: []}.get(comm.rank, [7.0])  # ranks 3 and up: 7.0
    expected = sorted({100.0, 1.0} | ({0.0} if comm.size > 1 else set()) | ({7.0} if comm.size > 3 else set()))
    assert everywhere(list(find_classes(np.array(mine), comm)) == expected)
    words = np.array({0: ["dog", "cat"], 1: ["ant", "zebra-long-name"]}.get(comm.rank % 2, []), dtype=str)
    got = find_classes(words, comm)
    expected = sorted({"dog", "cat"} | ({"ant", "zebra-long-name"} if comm.size > 1 else set()))
    assert everywhere(list(got) == expected and got.dtype.kind == "U")
    assert everywhere(find_classes(np.empty(0), comm).size == 0)


def test_labels_are_numbers_only_when_every_rank_can_read_them_so(comm):
    numeric = numbers_if_all_ranks_can(np.array(["1", "2.5"]), comm)
    assert everywhere(numeric.dtype == np.float64 and list(numeric) == [1.0, 2.5])
    mixed = numbers_if_all_ranks_can(np.array(["1"] if comm.rank else ["x"]), comm)
    assert everywhere(mixed.dtype.kind == "U")


@pytest.mark.parametrize("labels", [[0, 1, 100], [-1, 1], ["setosa", "versicolor", "virginica"]])
def test_encoded_labels_train_like_their_indices(comm, labels):
    n = 90
    rng = np.random.default_rng(3)
    X = rng.standard_normal((n, 2))
    index = np.argmax(X @ rng.standard_normal((2, len(labels))), axis=1)
    a, b = block_bounds(n, comm.size, comm.rank)
    raw = np.array(labels)[index[a:b]]
    data = mt.Dataset(X[a:b].copy(), raw, a, n, "mem", np.zeros(comm.size))
    classes = mt.encode_labels(data, comm)
    assert everywhere(list(classes) == sorted(labels) and np.array_equal(data.y, index[a:b].astype(float)))
    assert everywhere(mt.n_classes(data, comm) == len(labels))
    other = mt.Dataset(X[a:b].copy(), np.where(np.arange(b - a) == 0, np.array(labels)[0], raw), a, n, "t",
                       np.zeros(comm.size))
    mt.encode_labels(data, comm)  # already indices 0..K-1: a no-op mapping
    with pytest.raises(mt.JobError, match="not one of the classes"):
        mt.encode_labels(mt.Dataset(X[a:b], raw, a, n, "mem", np.zeros(comm.size)), comm,
                         mt.Dataset(X[:1], np.array(["unseen"] if raw.dtype.kind == "U" else [55.0]), 0, 1,
                                    "t", np.zeros(comm.size)))
    del other


def test_n_classes_refuses_labels_with_gaps(comm):
    a, b = block_bounds(3, comm.size, comm.rank)
    data = mt.Dataset(np.zeros((b - a, 1)), np.array([0.0, 1.0, 100.0])[a:b], a, 3, "gaps", np.zeros(comm.size))
    with pytest.raises(mt.JobError, match=r"\(0, 1, 100\), not 0..K-1"):
        mt.n_classes(data, comm)


def test_headerless_and_pandas_index_files_read_every_row(comm, shared_dir):
    pd = pytest.importorskip("pandas")
    rows = np.random.default_rng(0).standard_normal((200, 3))
    plain, indexed = os.path.join(shared_dir, "plain.csv"), os.path.join(shared_dir, "indexed.csv")
    on_rank0(lambda: (np.savetxt(plain, rows, delimiter=","),
                      pd.DataFrame(rows, columns=["a", "b", "y"]).to_csv(indexed)))
    a, b = block_bounds(200, comm.size, comm.rank)
    for path in (plain, indexed):
        data = mt.load(path, comm)
        assert data.n_total == 200 and data.n_features == 2 and len(data.notes) == 1
        assert everywhere(np.array_equal(data.X, rows[a:b, :2]) and np.array_equal(data.y, rows[a:b, 2]))
    assert mt.load(indexed, comm).feature_names == ("a", "b") and mt.load(plain, comm).feature_names is None


def test_python_predict_applies_the_model_files_schema(comm, shared_dir):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((60, 3)) * [1.0, 10.0, 100.0] + [5.0, -3.0, 50.0]
    words = np.array(["no", "yes"])[(X[:, 0] > 5).astype(int)]
    mean, scale = X.mean(axis=0), X.std(axis=0)
    theta = np.array([3.0, -0.2, 0.1, 0.5])
    model = mt.create_model("logistic", 3)
    path = os.path.join(shared_dir, "m.npz")
    schema = mt.Schema(("a", "b", "c"), "label", np.array(["no", "yes"]), mean=mean, scale=scale)
    on_rank0(lambda: write_npz(path, mt.models.save_arrays(model, theta, schema.arrays())))
    loaded, loaded_theta = mt.load_model(path)
    a, b = block_bounds(60, comm.size, comm.rank)
    data = mt.Dataset(X[a:b].copy(), words[a:b], a, 60, "raw rows", np.zeros(comm.size), ("a", "b", "c"))
    probabilities, accuracy = mt.predict(loaded, loaded_theta, data, comm)
    labels, _ = mt.predict(loaded, loaded_theta, data, comm, labels=True)
    z = (X - mean) / scale @ theta[:3] + theta[3]  # the reference: plain NumPy on the raw rows
    assert accuracy == pytest.approx(np.mean((z > 0) == (words == "yes")), abs=1e-15)
    if comm.rank == 0:
        np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-z)), rtol=1e-12)
        assert list(labels) == list(np.where(z > 0, "yes", "no"))
    renamed = mt.Dataset(X[a:b].copy(), None, a, 60, "other", np.zeros(comm.size), ("a", "c", "b"))
    with pytest.raises(mt.JobError, match=r"has the features \(a, c, b\), but the model was trained on \(a, b, c\)"):
        mt.predict(loaded, loaded_theta, renamed, comm)
