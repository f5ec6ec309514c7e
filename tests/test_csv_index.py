"""The index that pandas writes into a CSV without a header line (``df.to_csv(header=False)``):
left out when it counts up, refused when shuffled, decided by --index / --no-index."""
import numpy as np
import pytest

import mpitrain as mt

pd = pytest.importorskip("pandas")


def frame(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    return pd.DataFrame(X, columns=["a", "b", "c"]).assign(label=(X @ [1.0, -1.0, 0.5] > 0).astype(int))


@pytest.mark.parametrize("rows", ["all", "filtered"])
def test_a_headerless_pandas_index_that_counts_up_is_left_out(tmp_path, rows):
    f = frame()
    if rows == "filtered":
        f = f[f.a > -0.5]  # the index keeps gaps, still going up
    f.to_csv(tmp_path / "d.csv", header=False)  # pandas' default index=True
    data = mt.load(str(tmp_path / "d.csv"), None)
    np.testing.assert_array_equal(data.X, f[["a", "b", "c"]].to_numpy())  # pandas wrote repr-exact floats
    np.testing.assert_array_equal(data.y, f.label.to_numpy())
    assert any("counts the rows up" in note for note in data.notes)
    kept = mt.load(str(tmp_path / "d.csv"), None, index=False)
    np.testing.assert_array_equal(kept.X[:, 0], f.index.to_numpy())


def test_a_shuffled_headerless_index_is_refused_until_a_flag_decides(tmp_path):
    f = frame().sample(frac=1, random_state=0)  # as train_test_split leaves it
    f.to_csv(tmp_path / "d.csv", header=False)
    with pytest.raises(mt.JobError, match=r"d.csv has no header line.*distinct integers.*--index.*--no-index"):
        mt.load(str(tmp_path / "d.csv"), None)
    data = mt.load(str(tmp_path / "d.csv"), None, index=True)
    np.testing.assert_array_equal(data.X, f[["a", "b", "c"]].to_numpy())
    assert mt.load(str(tmp_path / "d.csv"), None, index=False).n_features == 4


def test_a_first_column_that_only_starts_like_an_index_stops_the_run(tmp_path):
    # The first 64 KiB count up; far below, the column repeats a value: it was a feature after all.
    n = 3000
    first = np.arange(n)
    first[2500:] = 7
    lines = [f"{k},{v:.17g},{k % 2}" for k, v in zip(first, np.linspace(0, 1, n))]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    assert (tmp_path / "d.csv").stat().st_size > 1 << 16
    with pytest.raises(mt.JobError, match=r"row 2500 has '7' there; give --index .*--no-index"):
        mt.load(str(tmp_path / "d.csv"), None)
    assert mt.load(str(tmp_path / "d.csv"), None, index=False).n_features == 2


@pytest.mark.parametrize("first", [[3, 1, 2, 0], [0, 1, 1, 2, 5, 6], [1, 3]])
def test_integer_first_columns_that_do_not_look_like_an_index_stay_features(tmp_path, first):
    lines = [f"{k},{k * 0.5},{k % 2}" for k in first]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    data = mt.load(str(tmp_path / "d.csv"), None)
    np.testing.assert_array_equal(data.X[:, 0], first)
