"""Text files of one row per line (CSV, LIBSVM), split by bytes so that each rank reads only its rows.

Reading is four steps. ``ByteRanges.scan`` looks at this rank's share of the bytes for the
lines that begin in it (a line belongs to the range holding its first byte) and counts the
quote characters there. A newline inside a quoted field (``"first line\\nsecond line"``, as
pandas writes text) does not end a row: a byte is inside quotes when an odd number of quotes
precede it since the first row, so the ranks exchange their quote counts and ``keep`` drops the
line starts that lie inside quotes. The ranks then exchange their line counts and the byte
offsets at which the row blocks begin (``block_offsets``), so that row blocks, not byte ranges,
are what each rank finally parses.
"""
from __future__ import annotations

import os
from typing import Optional, Union

import numpy as np

_NEWLINE = ord("\n")
_QUOTE = ord('"')
_SCAN = 1 << 24  # bytes per scan chunk, so scanning a large range needs little memory


def scan_lines(data: Union[str, np.ndarray], start: int, stop: int, origin: int = 0,
               quote: Optional[int] = _QUOTE) -> tuple[np.ndarray, np.ndarray, int]:
    """(starts, before, n_quotes): the byte offsets where a line may begin in [start, stop), shape (k,);
    for each, the count of ``quote`` bytes in [start, that offset), shape (k,); and the count in
    [start, stop).

    ``data`` is a path (memory-mapped) or the bytes as a uint8 array. ``origin`` is where the
    first line starts (past a header or a byte-order mark); ``start`` must not precede it.
    """
    if isinstance(data, str):
        data = np.memmap(data, dtype=np.uint8, mode="r") if os.path.getsize(data) else np.zeros(0, np.uint8)
    stop = min(stop, data.size)
    found, before, n_quotes = [], [], 0
    for lo in range(start, stop, _SCAN):
        hi = min(lo + _SCAN, stop)
        # A line starts at q when q follows a newline; look one byte back for the first q.
        window = np.asarray(data[max(lo - 1, 0) : hi])
        newline = np.flatnonzero(window == _NEWLINE) + max(lo - 1, 0) + 1
        if lo <= origin < hi:
            newline = np.union1d(newline, [origin])
        starts = newline[(newline >= lo) & (newline < hi)].astype(np.int64)
        found.append(starts)
        if quote is not None:
            quotes = np.flatnonzero(window[lo - max(lo - 1, 0) :] == quote) + lo
            before.append(n_quotes + np.searchsorted(quotes, starts))
            n_quotes += quotes.size
        else:
            before.append(np.zeros(starts.size, dtype=np.int64))
    if not found:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), 0
    return np.concatenate(found), np.concatenate(before).astype(np.int64), n_quotes


def rows_outside_quotes(data: Union[str, np.ndarray], starts: np.ndarray, before: np.ndarray,
                        quotes_before: int) -> np.ndarray:
    """The line starts of ``scan_lines`` that lie outside quotes and begin a non-empty line.

    ``quotes_before``: the quote bytes between the first row and the scanned range.
    """
    if isinstance(data, str):
        data = np.memmap(data, dtype=np.uint8, mode="r") if os.path.getsize(data) else np.zeros(0, np.uint8)
    starts = starts[(before + quotes_before) % 2 == 0]
    blank = np.isin(np.asarray(data[starts]) if starts.size else starts, (_NEWLINE, ord("\r")))
    return starts[~blank]


def line_starts(data: Union[str, np.ndarray], start: int, stop: int, origin: int = 0) -> np.ndarray:
    """Byte offsets of the non-empty lines whose first byte lies in [start, stop), shape (k,),
    for a range that begins outside quotes (see ``scan_lines`` for the arguments)."""
    starts, before, _ = scan_lines(data, start, stop, origin)
    return rows_outside_quotes(data, starts, before, 0)


def unbalanced_quotes(where: str) -> str:
    """The message for a file whose quote characters do not pair up."""
    return (f"{where} holds an odd number of quote characters (\") after its header, so its rows cannot be told "
            f"apart safely: a quoted field is not closed, or a quote stands inside an unquoted field; quote such "
            f"fields whole and double the quotes inside them (as pandas' to_csv and Python's csv module write)")


def block_offsets(starts: np.ndarray, counts: np.ndarray, rank: int, file_end: int) -> np.ndarray:
    """What this rank knows of the byte offsets where each row block begins, shape (size+1,).

    ``counts[k]`` is the number of lines rank k found; ``starts`` are this rank's line offsets.
    Entry j is the offset of block j's first row if this rank found that row, else -1; the last
    entry, and those of empty blocks at the end, are ``file_end``. The element-wise maximum
    over all ranks is the complete table.
    """
    from .partition import block_bounds

    size, total = len(counts), int(np.sum(counts))
    first_line = int(np.sum(counts[:rank]))
    table = np.full(size + 1, -1, dtype=np.int64)
    table[size] = file_end
    for j in range(size):
        row = block_bounds(total, size, j)[0]
        if row == total:
            table[j] = file_end
        elif first_line <= row < first_line + len(starts):
            table[j] = starts[row - first_line]
    return table


class ByteRanges:
    """A text file of one row per line, read in byte ranges: ``scan``, ``keep``, ``locate``, then
    ``read_block`` (see the module).

    ``data_start`` is the first byte of the first row (past a header), ``file_end`` the size;
    ``quote`` the byte that quotes fields, or None when the format has no quoting (LIBSVM).
    """

    quote: Optional[int] = _QUOTE

    def __init__(self, path: str, data_start: int, file_end: int) -> None:
        self.path, self.data_start, self.file_end = path, data_start, file_end
        self.n_total = -1  # known after locate()
        self._starts = self._before = np.empty(0, dtype=np.int64)

    def scan(self, rank: int, size: int) -> int:
        """Find where lines may start in this rank's share of the bytes; return the quotes counted there."""
        span = self.file_end - self.data_start
        lo = self.data_start + span * rank // size
        hi = self.data_start + span * (rank + 1) // size
        self._starts, self._before, n_quotes = scan_lines(self.path, lo, hi, self.data_start, self.quote)
        return n_quotes

    def keep(self, quotes_before: int) -> int:
        """Keep the line starts outside quotes (``quotes_before``: those of the ranks before); return their count."""
        self._starts = rows_outside_quotes(self.path, self._starts, self._before, quotes_before)
        return len(self._starts)

    def locate(self, counts: np.ndarray, rank: int) -> np.ndarray:
        """This rank's part of the block-offset table (see ``block_offsets``)."""
        self.n_total = int(np.sum(counts))
        return block_offsets(self._starts, counts, rank, self.file_end)
