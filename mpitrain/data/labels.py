"""Labels as users write them: numbers with gaps, -1/+1, or text, mapped to classes 0..K-1.

The classes are the sorted distinct labels over all ranks, found with buffer collectives (a
Gatherv of each rank's distinct labels to rank 0, then two broadcasts); text travels as
fixed-width UTF-32 code points, never pickled.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

from ..errors import JobError, UsageError

if TYPE_CHECKING:
    from ..comm import Comm
    from . import Dataset


def is_text(y: Optional[np.ndarray]) -> bool:
    """True when ``y`` holds strings rather than numbers."""
    return y is not None and y.dtype.kind in "USO"


def numbers_if_all_ranks_can(y: Optional[np.ndarray], comm: "Comm") -> Optional[np.ndarray]:
    """Collective: text labels as float64 when every rank's labels are all numbers, else as text.

    The choice is made together, so "1" is the number 1 on every rank or the text "1" on every
    rank, never one on some ranks and the other elsewhere.
    """
    numbers, ok = y, 1
    if is_text(y):
        try:
            numbers = np.asarray(y, dtype=str).astype(np.float64)
        except ValueError:
            ok = 0
    all_ok = int(comm.Allreduce(np.array([ok], dtype=np.int64), "min")[0])
    if not is_text(y):
        return y
    return numbers if all_ok else np.asarray(y, dtype=str)


def find_classes(y: Optional[np.ndarray], comm: "Comm") -> np.ndarray:
    """Collective: the sorted distinct labels over all ranks, shape (K,), float64 or str.

    ``y`` is this rank's labels (numbers or text; the same kind on every rank).
    """
    y = np.empty(0) if y is None else y
    text = int(comm.Allreduce(np.array([int(is_text(y))], dtype=np.int64), "max")[0])
    if not text:
        local = np.unique(np.asarray(y, dtype=np.float64))
        gathered = comm.gather_rows(local)
        classes = np.unique(gathered) if gathered is not None else None
        count = comm.Bcast(np.array([0 if classes is None else classes.size], dtype=np.int64))
        out = classes if classes is not None else np.empty(int(count[0]))
        return comm.Bcast(np.ascontiguousarray(out, dtype=np.float64))
    local = np.unique(np.asarray(y, dtype=str))
    width = int(comm.Allreduce(np.array([max(local.dtype.itemsize // 4, 1)], dtype=np.int64), "max")[0])
    codes = np.ascontiguousarray(local.astype(f"<U{width}")).view(np.uint32).reshape(-1, width)
    gathered = comm.gather_rows(codes)
    classes = None
    if gathered is not None:
        classes = np.unique(np.ascontiguousarray(gathered).view(f"<U{width}").ravel())
    count = comm.Bcast(np.array([0 if classes is None else classes.size], dtype=np.int64))
    buf = np.zeros((int(count[0]), width), dtype=np.uint32)
    if classes is not None:
        buf[...] = np.ascontiguousarray(classes.astype(f"<U{width}")).view(np.uint32).reshape(-1, width)
    comm.Bcast(buf)
    return np.ascontiguousarray(buf).view(f"<U{width}").ravel()


def encode(y: np.ndarray, classes: np.ndarray, start: int, where: str) -> np.ndarray:
    """Class indices of ``y`` in ``classes`` (sorted), as float64 of shape (n,).

    UsageError naming the first global row whose label is not one of the classes.
    """
    if is_text(classes) != is_text(y):
        kind = "text" if is_text(y) else "numbers"
        raise UsageError(f"{where}: the labels are {kind}, but the classes are {describe_classes(classes)}")
    values = np.asarray(y, dtype=classes.dtype) if is_text(y) else np.asarray(y, dtype=np.float64)
    index = np.searchsorted(classes, values)
    found = index < classes.size
    found[found] = classes[index[found]] == values[found]
    if not found.all():
        row = int(np.flatnonzero(~found)[0])
        raise UsageError(f"{where}: row {start + row} has label {_shown(values[row])}, which is not one of the "
                         f"classes {describe_classes(classes)}")
    return index.astype(np.float64)


def encode_labels(train: "Dataset", comm: "Comm", *others: "Dataset") -> np.ndarray:
    """Collective: replace the labels of ``train`` and ``others`` by class indices 0..K-1; return the classes.

    The classes (shape (K,), sorted, float64 or str) are the distinct labels of ``train`` over
    all ranks; a label of ``others`` outside them raises JobError naming its row.

    >>> classes = encode_labels(train, comm, test)   # e.g. array([-1., 1.]) or array(['cat', 'dog'])  # doctest: +SKIP
    """
    if train.y is None:
        raise JobError(f"{train.spec} has no labels to encode")
    classes = find_classes(train.y, comm)
    for data in (train, *others):
        if data.y is None:
            continue
        with comm.together():
            data.y = encode(data.y, classes, data.start, data.spec)
    return classes


def require_numbers(model: str, *datasets: "Dataset") -> None:
    """None (a regressor has no classes), or JobError on every rank when ``model`` is given text labels."""
    for data in datasets:
        if is_text(data.y):  # the same on every rank: labels become numbers on all ranks or on none
            such = f" (such as {str(data.y[0])!r})" if data.y.size else ""
            raise JobError(f"{model} predicts numbers, but the labels of {data.spec} are text{such}; "
                           f"for classes use --model logistic or softmax, or mlp with --loss cross-entropy")


def _shown(value: object) -> str:
    """A label as the user wrote it: 3 rather than 3.0."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return repr(str(value)) if isinstance(value, (str, np.str_)) else str(value)


def describe_classes(classes: np.ndarray, limit: int = 10) -> str:
    """'(0, 1, 100)' or, for many classes, the first ones and a count."""
    shown = [_shown(c) for c in classes[:limit]]
    more = f", ... {classes.size} in all" if classes.size > limit else ""
    return f"({', '.join(shown)}{more})"
