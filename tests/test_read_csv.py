"""CSV as people write it, read serially: headers or none, pandas' index, quotes, text labels, gzip."""
import copy
import gzip

import numpy as np
import pytest

from mpitrain.data import Schema, block_bounds, open_source
from mpitrain.data import csv as csv_module
from mpitrain.data.csv import Columns, CsvSource, header_columns, parse_block
from mpitrain.errors import UsageError


def read_all(source, size=1):
    """Every row of a CsvSource as `size` ranks would read it (one copy each): X and the labels as text."""
    sources = [source] + [copy.copy(source) for _ in range(size - 1)]
    quotes = np.array([s.scan(r, size) for r, s in enumerate(sources)])
    counts = np.array([s.keep(int(quotes[:r].sum())) for r, s in enumerate(sources)])
    table = np.max([s.locate(counts, r) for r, s in enumerate(sources)], axis=0)
    parts = []
    for r, s in enumerate(sources):
        a, b = block_bounds(int(counts.sum()), size, r)
        parts.append(s.read_block(int(table[r]), int(table[r + 1]), a, b - a))
    return np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@pytest.fixture(params=["pandas", "loadtxt"])
def parser(request, monkeypatch):
    """Run a test with pandas parsing, then with the np.loadtxt fallback."""
    if request.param == "pandas":
        pytest.importorskip("pandas")
    else:
        monkeypatch.setattr(csv_module, "_pandas", lambda: None)
    return request.param


def test_a_pandas_index_column_is_left_out_and_said(tmp_path, parser):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 3))
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(y=(X[:, 0] > 0).astype(int))
    frame.to_csv(tmp_path / "d.csv")  # the index becomes a first column named ""
    source = CsvSource(str(tmp_path / "d.csv"))
    assert source.n_features == 3 and source.feature_names == ("a", "b", "c") and source.label_name == "y"
    assert any("index" in note for note in source.notes)
    for size in (1, 2, 3):
        got, labels = read_all(CsvSource(str(tmp_path / "d.csv")), size)
        np.testing.assert_array_equal(got, X)
        np.testing.assert_array_equal(labels.astype(float), frame["y"].to_numpy())


@pytest.mark.parametrize("size", [1, 2, 3])
def test_a_first_line_of_numbers_is_data_not_a_header(tmp_path, parser, size):
    rows = np.arange(200 * 3, dtype=float).reshape(200, 3) / 8
    np.savetxt(tmp_path / "d.csv", rows, delimiter=",")
    source = CsvSource(str(tmp_path / "d.csv"))
    X, y = read_all(source, size)
    assert X.shape == (200, 2) and source.n_total == 200  # not 199: the first row is kept
    np.testing.assert_array_equal(X, rows[:, :2])
    np.testing.assert_array_equal(y.astype(float), rows[:, 2])
    assert any("all numbers" in note for note in source.notes) and source.feature_names is None
    # header=False says so without a note; header=True takes the first line as names.
    assert CsvSource(str(tmp_path / "d.csv"), header=False).notes == []
    forced = CsvSource(str(tmp_path / "d.csv"), header=True)
    assert forced.columns.names[0] == "0.000000000000000000e+00" and not forced.notes
    assert read_all(forced)[0].shape == (199, 2)


def test_header_detection_rules():
    assert header_columns(b"a,b,y\n", None, ",", "f")[:2] == (["a", "b", "y"], True)
    assert header_columns(b"1,2.5,-3e4\r\n", None, ",", "f")[:2] == (["0", "1", "2"], False)
    assert header_columns(b"1,2,x\n", None, ",", "f")[1] is True  # one name makes it a header
    assert header_columns(b"\xef\xbb\xbfa;b\n", None, ";", "f")[0] == ["a", "b"]
    with pytest.raises(UsageError, match="empty"):
        header_columns(b"\n", None, ",", "f")


def test_a_headerless_file_with_text_labels_is_not_read_as_having_a_header(tmp_path):
    """pandas' to_csv(header=False) of rows with text labels: the first line's only text field ("dog") sits
    in a column of text labels, so it may be data. It used to become the header: one row lost and the
    index trained as a feature, silently. Now the reader asks; either flag then reads it as told."""
    assert header_columns(b"a,b,y\n", None, ",", "f", b"1,2,dog\n")[1] is True  # names over numbers: a header
    with pytest.raises(UsageError, match="--header .* or --no-header"):
        header_columns(b"0,0.5,1.5,dog\n", None, ",", "f", b"1,0.7,2.5,cat\n")
    path = tmp_path / "noheader.csv"
    path.write_text("0,0.5,1.5,dog\n1,0.7,2.5,cat\n2,0.1,0.2,dog\n")
    with pytest.raises(UsageError, match="cannot tell whether the first line"):
        CsvSource(str(path))
    X, y = read_all(CsvSource(str(path), header=False))
    assert X.shape == (3, 2) and list(y) == ["dog", "cat", "dog"]  # every row, the index left out


def test_quotes_text_labels_blank_cells_and_delimiters(tmp_path, parser):
    path = tmp_path / "d.tsv"
    path.write_text('"x one"\t"x two"\tkind\n1.5\t2\t"cat, big"\n\t4\tdog\n5\tNA\tcat, big\n')
    source = open_source(str(path))
    X, labels = read_all(source)
    np.testing.assert_array_equal(X, [[1.5, 2], [np.nan, 4], [5, np.nan]])
    assert list(labels) == ["cat, big", "dog", "cat, big"] and source.feature_names == ("x one", "x two")
    semi = tmp_path / "d.csv"
    semi.write_text("a;b;y\n1;2;0\n3;4;1\n")
    X, labels = read_all(open_source(str(semi), delimiter=";"))
    np.testing.assert_array_equal(X, [[1, 2], [3, 4]])


def test_gzip_csv_gives_the_rows_of_the_plain_file(tmp_path, parser):
    rows = np.random.default_rng(1).standard_normal((31, 4))
    text = "a,b,c,y\n" + "\n".join(",".join(repr(v) for v in r) for r in rows.tolist()) + "\n"
    with gzip.open(tmp_path / "d.csv.gz", "wt") as f:
        f.write(text)
    source = open_source(str(tmp_path / "d.csv.gz"))
    assert source.n_total == 31
    for size in (1, 2, 3):
        parts = [source.read(*block_bounds(31, size, r)) for r in range(size)]
        np.testing.assert_array_equal(np.vstack([p[0] for p in parts]), rows[:, :3])
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]).astype(float), rows[:, 3])


def test_parse_errors_name_the_global_row_and_the_column(parser):
    columns = Columns(("a", "b", "y"), 2)
    with pytest.raises(UsageError, match=r"f.csv: row 11, column 'b': 'abc' is not a number"):
        parse_block(b"1,2,0\n3,abc,1\n", columns, 2, 10, "f.csv")
    with pytest.raises(UsageError, match=r"row 10 has no label \(column 'y' is empty\)"):
        parse_block(b"1,2,\n", columns, 1, 10, "f.csv")


def test_schema_fills_then_standardises_and_survives_the_model_file():
    schema = Schema(("a", "b"), "y", np.array(["no", "yes"]), "mean", np.array([1.0, 2.0]),
                    np.array([0.5, 1.0]), np.array([2.0, 4.0]))
    X = np.array([[np.nan, 3.0], [1.5, np.nan]])
    np.testing.assert_array_equal(schema.transform(X), [[(1.0 - 0.5) / 2, (3 - 1) / 4], [(1.5 - 0.5) / 2, (2 - 1) / 4]])
    assert np.isnan(X).sum() == 2  # the caller's array is left alone
    back = Schema.from_arrays(schema.arrays())
    assert back.feature_names == ("a", "b") and back.label_name == "y" and back.impute == "mean"
    assert list(back.classes) == ["no", "yes"]
    assert Schema.from_arrays({}) == Schema()


def test_quoted_fields_that_span_lines_are_split_nowhere_by_either_parser(tmp_path, parser):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(4)
    texts = np.array(["plain", "two\nlines", 'says "hi"', "a, b\r\nc", '"\n"'])
    frame = pd.DataFrame(rng.standard_normal((30, 2)), columns=["a", "b"]).assign(y=texts[rng.integers(0, 5, 30)])
    frame.to_csv(tmp_path / "d.csv", index=False)
    whole = pd.read_csv(tmp_path / "d.csv", keep_default_na=False)
    for size in (1, 2, 3, 5, 40):
        X, labels = read_all(CsvSource(str(tmp_path / "d.csv")), size)
        np.testing.assert_array_equal(X, whole[["a", "b"]].to_numpy())
        # np.loadtxt reads with universal newlines, so a CRLF inside quotes comes back as LF there.
        expected = whole["y"].str.replace("\r\n", "\n") if parser == "loadtxt" else whole["y"]
        assert labels.tolist() == expected.tolist()
