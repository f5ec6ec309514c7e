"""Each rank reads only its block; ranks agree before reading; bad data stops every rank alike."""
import os
import tempfile

import numpy as np
import pytest
from mpi4py import MPI

import mpitrain as mt
from mpitrain.data import block_bounds

pytestmark = pytest.mark.mpi


@pytest.fixture
def shared_dir():
    """A temporary directory made by rank 0 and known to every rank."""
    path = tempfile.mkdtemp() if MPI.COMM_WORLD.rank == 0 else None
    path = MPI.COMM_WORLD.bcast(path, root=0)
    yield path
    MPI.COMM_WORLD.Barrier()


def on_rank0(fn):
    if MPI.COMM_WORLD.rank == 0:
        fn()
    MPI.COMM_WORLD.Barrier()


@pytest.mark.parametrize("n", [0, 1, 2, 5, 50])
@pytest.mark.parametrize("trailing_newline", [True, False])
def test_csv_ranks_read_exactly_their_block(comm, shared_dir, n, trailing_newline):
    rows = np.arange(n * 3, dtype=float).reshape(n, 3) / 7
    path = os.path.join(shared_dir, "d.csv")
    text = "\n".join(["f1,f2,y"] + [",".join(map(repr, r)) for r in rows.tolist()])
    on_rank0(lambda: open(path, "w").write(text + ("\n" if trailing_newline else "")))
    if n == 0:
        data = mt.load(path, comm, require_labels=False)
    else:
        data = mt.load(path, comm)
    a, b = block_bounds(n, comm.size, comm.rank)
    assert (data.start, data.n_total, data.n_features) == (a, n, 2)
    np.testing.assert_array_equal(data.X, rows[a:b, :2])
    if n:
        np.testing.assert_array_equal(data.y, rows[a:b, 2])


def test_npy_directory_ranks_read_their_block(comm, shared_dir):
    X = np.random.default_rng(0).standard_normal((13, 4))
    on_rank0(lambda: (np.save(os.path.join(shared_dir, "X.npy"), X),
                      np.save(os.path.join(shared_dir, "y.npy"), X[:, 0] > 0)))
    data = mt.load(shared_dir, comm)
    a, b = block_bounds(13, comm.size, comm.rank)
    np.testing.assert_array_equal(data.X, X[a:b])
    np.testing.assert_array_equal(data.y, (X[a:b, 0] > 0).astype(float))


def test_error_on_one_rank_stops_every_rank_naming_it(comm):
    with pytest.raises(mt.JobError) as info:
        with comm.together():
            if comm.rank == comm.size - 1:
                raise mt.UsageError("bad input here")
    who = "rank" if comm.size == 1 else f"rank {comm.size - 1}"
    assert "bad input here" in str(info.value) and (comm.size == 1 or who in str(info.value))


@pytest.mark.mpi(min_size=2)
def test_ranks_that_see_different_feature_counts_are_named(comm, shared_dir):
    path = os.path.join(shared_dir, f"r{comm.rank}.csv")
    columns = 4 if comm.rank == 1 else 3
    with open(path, "w") as f:
        f.write(",".join(f"c{i}" for i in range(columns)) + "\n" + ",".join(["1"] * columns) + "\n")
    with pytest.raises(mt.JobError, match="ranks disagree on the features") as info:
        mt.load(path, comm)  # each rank gives its own file: a stand-in for inconsistent copies
    assert "rank 1: 3" in str(info.value) and "rank 0: 2" in str(info.value)


@pytest.mark.mpi(min_size=2)
def test_ranks_that_see_files_of_different_sizes_are_named(comm, shared_dir):
    # Same columns, one more row on rank 1: before, each rank's byte range found one row and the
    # job trained silently on rows of two different files.
    path = os.path.join(shared_dir, f"s{comm.rank}.csv")
    with open(path, "w") as f:
        f.write("a,y\n1,0\n" + ("2,1\n" if comm.rank == 1 else ""))
    with pytest.raises(mt.JobError, match="ranks disagree on the size in bytes") as info:
        mt.load(path, comm)
    assert "rank 0: 8" in str(info.value) and "rank 1: 12" in str(info.value)


def test_nan_in_the_data_is_reported_with_its_row(comm, shared_dir):
    path = os.path.join(shared_dir, "nan.csv")
    on_rank0(lambda: open(path, "w").write("a,b,y\n" + "1,2,0\n" * 6 + "1,nan,1\n" + "1,2,0\n" * 3))
    with pytest.raises(mt.JobError, match=r"row 6, column .b. is missing \(NaN\)"):
        mt.load(path, comm)


def quoted_text_frame(n, seed):
    """Rows whose text label spans lines, holds quotes, commas and CRLF, as pandas writes them."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(seed)
    texts = np.array(["plain", "two\nlines", 'says "hi"', "a, b\r\nc", "\n\nstarts\nwith newlines\n", '"\n"'])
    return pd.DataFrame(rng.standard_normal((n, 3)), columns=list("abc")).assign(label=texts[rng.integers(0, 6, n)])


@pytest.mark.parametrize("n", [1, 2, 7, 60])
@pytest.mark.parametrize("gz", [False, True])
def test_quoted_fields_that_span_lines_are_read_as_pandas_reads_the_whole_file(comm, shared_dir, n, gz):
    pd = pytest.importorskip("pandas")
    path = os.path.join(shared_dir, f"q{n}.csv" + (".gz" if gz else ""))
    on_rank0(lambda: quoted_text_frame(n, n).to_csv(path, index=False))
    whole = pd.read_csv(path, keep_default_na=False)
    data = mt.load(path, comm)
    a, b = block_bounds(n, comm.size, comm.rank)
    same = (data.n_total == n and np.array_equal(data.X, whole[["a", "b", "c"]].to_numpy()[a:b])
            and data.y.tolist() == whole["label"].tolist()[a:b])
    assert MPI.COMM_WORLD.allreduce(same, op=MPI.LAND)


def test_a_text_feature_spanning_lines_is_named_at_its_row(comm, shared_dir):
    path = os.path.join(shared_dir, "t.csv")
    on_rank0(lambda: open(path, "w").write("a,b,y\n" + '1,2,0\n"x\ny",3,1\n' * 3 + '1,"4\n",0\n'))
    with pytest.raises(mt.JobError, match=r"row 1, column 'a': 'x\\ny' is not a number"):
        mt.load(path, comm)


@pytest.mark.parametrize("text, words", [('a,b,y\n1,2,0\n3,4"5,1\n6,7,0\n', "odd number of quote characters"),
                                         ('a,b,y\n1,2,0\n3,4"5,1\n6,7"8,0\n9,1,1\n', "quote such fields whole")])
def test_quotes_that_do_not_pair_up_stop_the_run_naming_the_file(comm, shared_dir, text, words):
    path = os.path.join(shared_dir, "odd.csv")
    on_rank0(lambda: open(path, "w").write(text))
    with pytest.raises(mt.JobError, match=words) as info:
        mt.load(path, comm)
    assert path in str(info.value)
