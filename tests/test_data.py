"""Data sources read serially: CSV byte ranges, synthetic rows, npy directories, spec errors."""
import os

import numpy as np
import pytest

from mpitrain.data import block_bounds, open_source
from mpitrain.data.byteranges import block_offsets, line_starts
from mpitrain.data.csv import Columns, CsvSource, parse_block
from mpitrain.errors import UsageError


def write_csv(path, rows, newline="\n", trailing=True, header="a,b,label"):
    text = newline.join([header] + [",".join(repr(float(v)) for v in row) for row in rows])
    path.write_bytes((text + (newline if trailing else "")).encode())
    return str(path)


def read_like_ranks(path, size, label_column=None):
    """Emulate `size` ranks: scan byte ranges, combine offset tables with max, parse row blocks."""
    sources = [CsvSource(path, label_column, None) for _ in range(size)]
    quotes = np.array([s.scan(r, size) for r, s in enumerate(sources)])
    counts = np.array([s.keep(int(quotes[:r].sum())) for r, s in enumerate(sources)])
    table = np.max([s.locate(counts, r) for r, s in enumerate(sources)], axis=0)
    blocks = []
    for r, s in enumerate(sources):
        a, b = block_bounds(int(counts.sum()), size, r)
        X, labels = s.read_block(int(table[r]), int(table[r + 1]), a, b - a)
        blocks.append((X, None if labels is None else labels.astype(float)))
    return counts.sum(), blocks


@pytest.mark.parametrize("trailing", [True, False])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 7, 30])
def test_csv_blocks_are_exactly_the_rows_of_each_block(tmp_path, trailing, newline, size):
    rng = np.random.default_rng(size)
    rows = np.round(rng.standard_normal((23, 3)) * 10 ** rng.integers(0, 5, (23, 1)), 3)
    path = write_csv(tmp_path / "d.csv", rows, newline, trailing)
    n, blocks = read_like_ranks(path, size)
    assert n == 23
    for r, (X, y) in enumerate(blocks):
        a, b = block_bounds(23, size, r)
        np.testing.assert_array_equal(X, rows[a:b, :2])
        np.testing.assert_array_equal(y, rows[a:b, 2])


def test_line_starts_ignores_blank_lines_and_owns_lines_by_their_first_byte(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"h\n11\n22\n\n33\n")
    assert list(line_starts(str(path), 2, len(path.read_bytes()))) == [2, 5, 9]
    assert list(line_starts(str(path), 3, 6)) == [5]  # the line at 2 started before the range
    assert list(line_starts(str(path), 6, 20)) == [9]


def test_block_offsets_only_knows_its_own_rows():
    table = block_offsets(np.array([10, 20, 30]), np.array([2, 3, 0]), rank=1, file_end=99)
    # 5 rows in 3 blocks start at rows 0, 2, 4: rank 1 holds rows 2..4 (offsets 10, 20, 30).
    assert list(table) == [-1, 10, 30, 99]


def test_csv_label_column_by_name_and_index(tmp_path):
    path = write_csv(tmp_path / "d.csv", [[1, 2, 3], [4, 5, 6]], header="x,target,z")
    for label in ["target", "1", "-2"]:
        _, [(X, y)] = read_like_ranks(path, 1, label)
        np.testing.assert_array_equal(y, [2, 5])
        np.testing.assert_array_equal(X, [[1, 3], [4, 6]])
    with pytest.raises(UsageError, match="neither a column"):
        CsvSource(path, "nope", None)


def test_csv_without_label_column_for_prediction(tmp_path):
    path = write_csv(tmp_path / "d.csv", [[1, 2], [3, 4]], header="a,b")
    source = CsvSource(path, None, n_features=2)
    assert not source.has_labels and source.n_features == 2


def test_csv_bad_values_name_the_file_row_and_column():
    columns = Columns(("a", "b", "y"), 2)
    with pytest.raises(UsageError, match=r"d.csv: row 8, column 'b': 'x' is not a number"):
        parse_block(b"1,2,0\n3,x,1\n", columns, 2, 7, "d.csv")
    with pytest.raises(UsageError, match="row 7 has no label"):
        parse_block(b"1,2,\n", columns, 1, 7, "d.csv")
    with pytest.raises(UsageError, match="d.csv"):
        parse_block(b"1,2,0\n3,4,5,6\n", columns, 2, 0, "d.csv")


def test_synthetic_rows_do_not_depend_on_the_partition():
    source = open_source("synthetic:classification,n=3000,d=4,seed=5")
    X, y = source.read(0, 3000)
    for size in (2, 3, 7):
        parts = [source.read(*block_bounds(3000, size, r)) for r in range(size)]
        np.testing.assert_array_equal(np.vstack([p[0] for p in parts]), X)
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), y)
    assert set(np.unique(y)) == {0.0, 1.0}
    test_X, _ = open_source("synthetic:classification,n=3000,d=4,seed=5,split=test").read(0, 10)
    assert not np.array_equal(test_X, X[:10])


def test_synthetic_regression_follows_its_noise_level():
    source = open_source("synthetic:regression,n=20000,d=3,noise=0.5,seed=1")
    X, y = source.read(0, 20000)
    residual = y - X @ source.weights - source.bias
    assert abs(residual.std() - 0.5) < 0.02


def test_npy_directory_reads_its_slice(tmp_path):
    X = np.arange(30.0).reshape(10, 3)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", np.arange(10.0))
    source = open_source(str(tmp_path))
    Xs, ys = source.read(4, 7)
    np.testing.assert_array_equal(Xs, X[4:7])
    np.testing.assert_array_equal(ys, [4, 5, 6])
    os.remove(tmp_path / "y.npy")
    assert not open_source(str(tmp_path)).has_labels


@pytest.mark.parametrize("spec, message", [
    ("missing.csv", "does not exist"),
    ("missing_dir", "does not exist"),
    ("synthetic:images", "unknown synthetic"),
    ("synthetic:regression,n=ten", "bad synthetic option"),
    ("synthetic:regression,n", "key=value"),
    ("synthetic:regression,split=dev", "split"),
])
def test_bad_specs_give_clear_errors(tmp_path, spec, message):
    with pytest.raises(UsageError, match=message):
        open_source(str(tmp_path / spec) if not spec.startswith("synthetic") else spec)


def test_synthetic_multiclass_labels_follow_the_true_scores():
    source = open_source("synthetic:classification,n=4000,d=6,classes=4,noise=0,seed=2")
    X, y = source.read(0, 4000)
    np.testing.assert_array_equal(y, np.argmax(X @ source.weights, axis=1))
    assert np.bincount(y.astype(int)).min() > 600  # balanced: about 1000 each
    np.testing.assert_array_equal(source.read(1000, 1100)[1], y[1000:1100])
    with pytest.raises(UsageError, match="classification only"):
        open_source("synthetic:regression,classes=3")
