"""File formats read serially: npz memory maps, HDF5 and Parquet slices, LIBSVM labels, part folders,
and the message that names the missing extra."""
import os
import sys

import numpy as np
import pytest

from mpitrain.data import open_source
from mpitrain.data.npy import npz_member
from mpitrain.errors import UsageError


def test_npz_members_stored_plainly_are_memory_mapped(tmp_path):
    X, y = np.arange(12.0).reshape(4, 3), np.array(["a", "b", "a", "c"])
    np.savez(tmp_path / "plain.npz", X=X, y=y, other=np.zeros(2))
    np.savez_compressed(tmp_path / "packed.npz", X=X, y=y)
    assert isinstance(npz_member(str(tmp_path / "plain.npz"), "X"), np.memmap)
    assert not isinstance(npz_member(str(tmp_path / "packed.npz"), "X"), np.memmap)
    for name in ("plain", "packed"):
        source = open_source(str(tmp_path / f"{name}.npz"))
        Xs, ys = source.read(1, 3)
        np.testing.assert_array_equal(Xs, X[1:3])
        assert list(ys) == ["b", "a"]
    with pytest.raises(UsageError, match=r"has no array 'features'; it has X, y, other"):
        open_source(str(tmp_path / "plain.npz") + ":features,y")


def test_hdf5_reads_a_hyperslab_of_the_named_datasets(tmp_path):
    h5py = pytest.importorskip("h5py")
    X = np.random.default_rng(0).standard_normal((9, 2))
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["inputs"], f["kind"] = X, np.array([b"cat", b"dog"] * 4 + [b"cat"])
    source = open_source(str(tmp_path / "d.h5") + ":inputs,kind")
    Xs, ys = source.read(3, 7)
    np.testing.assert_array_equal(Xs, X[3:7])
    assert list(ys) == ["dog", "cat", "dog", "cat"] and source.label_name == "kind"
    with pytest.raises(UsageError, match=r"has no dataset 'X'; it has inputs, kind"):
        open_source(str(tmp_path / "d.h5"))


def test_parquet_reads_only_the_row_groups_it_needs_and_drops_a_pandas_index(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"a": np.arange(25.0), "b": np.arange(25.0) ** 2, "label": ["x", "y"] * 12 + ["x"]},
                         index=np.arange(100, 125))  # not a range index: pandas stores it as a column
    frame.to_parquet(tmp_path / "d.parquet", row_group_size=4)
    source = open_source(str(tmp_path / "d.parquet"))
    assert source.feature_names == ("a", "b") and source.label_name == "label" and source.n_total == 25
    assert any("__index_level_0__" in note for note in source.notes)
    X, y = source.read(5, 14)
    np.testing.assert_array_equal(X[:, 0], np.arange(5.0, 14.0))
    assert list(y) == ["y", "x"] * 4 + ["y"]


def test_libsvm_class_names_and_the_index_base(tmp_path):
    pytest.importorskip("sklearn")
    path = tmp_path / "d.svm"
    path.write_text("spam 1:0.5 3:2\nham 2:1\n\nspam 3:-1\n")
    source = open_source(str(path))
    source.scan(0, 1)
    table = source.locate(np.array([source.keep(0)]), 0)
    X, y = source.read_block(int(table[0]), int(table[1]), 0, 3)
    assert list(y) == ["spam", "ham", "spam"]
    np.testing.assert_array_equal(X.toarray(), [[0, 0.5, 0, 2], [0, 0, 1, 0], [0, 0, 0, -1]])


def test_a_folder_of_parts_refuses_mixed_kinds_and_different_columns(tmp_path):
    (tmp_path / "part-0.csv").write_text("a,y\n1,0\n")
    (tmp_path / "part-1.parquet").write_bytes(b"")
    with pytest.raises(UsageError, match="mixes part files"):
        open_source(str(tmp_path))
    os.remove(tmp_path / "part-1.parquet")
    (tmp_path / "part-1.csv").write_text("b,y\n1,0\n")
    source = open_source(str(tmp_path))
    with pytest.raises(UsageError, match=r"part-1.csv has the columns \(b, y\), but .*part-0.csv has \(a, y\)"):
        source._open(1)
    os.remove(tmp_path / "part-0.csv")
    os.remove(tmp_path / "part-1.csv")
    with pytest.raises(UsageError, match="neither X.npy nor part files"):
        open_source(str(tmp_path))


@pytest.mark.parametrize("name, extra", [("d.parquet", "parquet"), ("d.h5", "hdf5"), ("d.svm", "libsvm")])
def test_a_missing_library_names_the_extra_that_installs_it(tmp_path, monkeypatch, name, extra):
    (tmp_path / name).write_bytes(b"1 1:1\n")
    for module in ("pyarrow", "pyarrow.parquet", "h5py", "sklearn", "sklearn.datasets"):
        monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    with pytest.raises(UsageError, match=rf"pip install 'mpitrain\[{extra}\]'"):
        open_source(str(tmp_path / name))


@pytest.mark.parametrize("name, options", [("linear", {}), ("logistic", {}), ("softmax", {"n_classes": 3}),
                                           ("mlp", {"hidden": (4,), "n_classes": 3})])
def test_models_take_sparse_rows_without_densifying_them(name, options):
    sparse = pytest.importorskip("scipy.sparse")
    import mpitrain as mt

    rng = np.random.default_rng(3)
    X = rng.standard_normal((30, 50)) * (rng.random((30, 50)) < 0.05)
    y = rng.integers(0, 3 if options else 2, 30).astype(float)
    model = mt.create_model(name, 50, **options)
    theta = rng.standard_normal(model.n_params) * 0.1
    grads = [np.empty(model.n_params), np.empty(model.n_params)]
    sums = [model.sums(theta, rows, y, grad) for rows, grad in ((X, grads[0]), (sparse.csr_matrix(X), grads[1]))]
    np.testing.assert_allclose(sums[1], sums[0], rtol=1e-12)
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(model.predict(theta, sparse.csr_matrix(X)), model.predict(theta, X), rtol=1e-12)


def test_the_memory_check_does_not_count_sparse_rows_as_dense():
    sparse = pytest.importorskip("scipy.sparse")
    import mpitrain as mt
    from mpitrain.algorithms import _memory_error

    n, d = 10**6, 10**5  # dense: 745 GiB; as CSR without non-zeros: 8 MB
    data = mt.Dataset(sparse.csr_matrix((n, d)), np.zeros(n), 0, n, "mem", np.array([n]))
    assert _memory_error(mt.create_model("logistic", d), data, None, 1) == ""
