"""The auto plan is a pure function of its arguments and the table; malformed tables are refused."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mpitrain.collectives import auto

TABLE = {"multiple": {"2": [[4096, "native"], [1 << 22, "rabenseifner"], [None, "ring"]],
                      "4": [[None, "tree"]]}}


@pytest.mark.parametrize(
    "nbytes, size, level, expected",
    [
        (8, 2, "multiple", "native"),
        (4096, 2, "multiple", "rabenseifner"),
        (1 << 22, 2, "multiple", "ring"),
        (1 << 30, 3, "multiple", "native"),  # 3 ranks were not calibrated
        (8, 4, "multiple", "tree"),
        (1 << 30, 1, "multiple", "native"),  # one rank: nothing to exchange
        (1 << 30, 2, "serialized", "native"),  # no data for this thread level
    ],
)
def test_choose(nbytes: int, size: int, level: str, expected: str) -> None:
    assert auto.choose(nbytes, size, np.dtype(np.float64), "sum", level, TABLE) == expected


def test_load_table_merges_a_file(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "table.json"
    path.write_text(json.dumps(TABLE))
    monkeypatch.setenv(auto.ENV, str(path))
    table = auto.load_table()
    assert table["multiple"]["4"] == [[None, "tree"]]
    assert auto.digest(table) == auto.digest(json.loads(json.dumps(table)))


@pytest.mark.parametrize(
    "rows, words",
    [
        ([[4096, "native"]], "end with null"),
        ([[4096, "native"], [1024, "ring"], [None, "ring"]], "increase"),
        ([[None, "butterfly"]], "butterfly"),
    ],
)
def test_bad_tables(rows: list, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        auto.check_table({"multiple": {"2": rows}})


def test_unreadable_table_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="recalibrate"):
        auto.load_table(str(tmp_path / "missing.json"))


def test_rows_from_timings_prefers_native_within_the_margin() -> None:
    sizes = [8, 64, 1024, 1 << 20, 1 << 22]
    seconds = {
        "native": [1.0, 1.0, 1.0, 1.0, 1.0],
        "ring": [5.0, 0.95, 0.5, 0.5, 0.8],   # 5% faster at 64 B is noise: native stays
        "tree": [0.5, 2.0, 2.0, 2.0, 0.7],
    }
    rows = auto.rows_from_timings(sizes, seconds, margin=0.1)
    assert rows == [[23, "tree"], [256, "native"], [2097152, "ring"], [None, "tree"]]
    auto.check_table({"multiple": {"2": rows}})
