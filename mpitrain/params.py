"""Parameters as named views into one contiguous buffer. NumPy only.

A model's parameters (and its gradient) are one vector ``theta`` of shape (n_params,), float64 by default;
a ``Layout`` names the arrays inside it. Penalised arrays (weights) come first and unpenalised
ones (biases) after them, so the L2 term and weight decay act on the prefix ``theta[:n_penalized]``.
Because every view shares the buffer, a model that writes its gradient into the views of ``grad``
leaves the whole gradient in one array that a single Allreduce can reduce in place.

>>> layout = Layout(weights={"W": (3, 2)}, biases={"b": (2,)})
>>> theta = layout.zeros()
>>> p = layout.views(theta)
>>> p["b"][:] = 1.0
>>> theta.tolist()
[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import numpy.typing  # noqa: F401 - np.typing in annotations

Shape = tuple[int, ...]


class Layout:
    """Names, shapes and offsets of the arrays in one flat parameter vector, weights first."""

    def __init__(self, weights: Mapping[str, Shape], biases: Mapping[str, Shape]) -> None:
        both = set(weights) & set(biases)
        if both:
            raise ValueError(f"parameter name(s) {', '.join(sorted(both))} used for both a weight and a bias")
        self.shapes: dict[str, Shape] = {**{k: tuple(s) for k, s in weights.items()},
                                         **{k: tuple(s) for k, s in biases.items()}}
        self.offsets: dict[str, tuple[int, int]] = {}
        end = 0
        for name, shape in self.shapes.items():
            size = int(np.prod(shape, dtype=np.int64))
            self.offsets[name] = (end, end + size)
            end += size
        self.size = end
        self.n_penalized = sum(self.offsets[k][1] - self.offsets[k][0] for k in weights)
        self._recent: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []

    @classmethod
    def record(cls, fields: Mapping[str, Shape]) -> "Layout":
        """A layout of named fields with no weights: a step buffer or a checkpoint row.

        >>> Layout.record({"grad": (4,), "loss": (), "vote": ()}).offsets["vote"]
        (5, 6)
        """
        return cls({}, fields)

    def zeros(self, dtype: np.typing.DTypeLike = np.float64) -> np.ndarray:
        """A new buffer of zeros, shape (size,)."""
        return np.zeros(self.size, dtype=dtype)

    def empty(self, dtype: np.typing.DTypeLike = np.float64) -> np.ndarray:
        """A new uninitialised buffer, shape (size,)."""
        return np.empty(self.size, dtype=dtype)

    def views(self, buf: np.ndarray) -> dict[str, np.ndarray]:
        """Named arrays that share memory with ``buf`` (shape (size,)); writing them writes ``buf``.

        The views of the last few buffers are kept (with the buffers themselves, so their memory
        cannot be reused): a training step asks for those of the same parameters and gradient
        every time.
        """
        for known, named in self._recent:
            if known is buf:
                return named
        if buf.shape != (self.size,):
            raise ValueError(f"parameter buffer has shape {buf.shape}; this layout needs ({self.size},)")
        named = {k: buf[a:b].reshape(self.shapes[k]) for k, (a, b) in self.offsets.items()}
        self._recent = [(buf, named), *self._recent[:3]]
        return named

    def pack(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """A new buffer holding the named ``arrays``; ValueError naming a missing or misshapen one."""
        buf = self.zeros()
        views = self.views(buf)
        for name, shape in self.shapes.items():
            if name not in arrays:
                raise ValueError(f"parameter {name!r} is missing (expected shape {shape})")
            value = np.asarray(arrays[name], dtype=np.float64)
            if value.shape != shape:
                raise ValueError(f"parameter {name!r} has shape {value.shape}; expected {shape}")
            views[name][...] = value
        return buf
