"""Synthetic data sets whose rows each rank generates on its own, without the others' rows."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..errors import UsageError

KINDS = ("regression", "classification")
DEFAULTS = {"n": 10000, "d": 20, "noise": 0.1, "seed": 0, "split": "train", "classes": 2}
CHUNK = 1024  # rows per independently seeded chunk; fixed, so rows never depend on n or ranks
_SPLITS = {"train": 0, "test": 1}


class SyntheticSource:
    """``synthetic:KIND[,n=N][,d=D][,noise=F][,seed=S][,split=train|test][,classes=K]``.

    Features are standard normal; the true weights and bias come from ``seed`` alone, so the
    train and test splits of one seed share them. Regression: y = x.w + b + noise * e;
    classification: y = 1[x.w + b + noise * e > 0], with e standard normal; with classes=K > 2,
    y = argmax(x W + noise * e) over K scores (W of shape (d, K) with unit columns, so the
    classes are balanced; e standard normal (K,)).
    """

    def __init__(self, kind: str, options: dict) -> None:
        if kind not in KINDS:
            raise UsageError(f"unknown synthetic data set {kind!r}; choose one of {', '.join(KINDS)}")
        unknown = set(options) - set(DEFAULTS)
        if unknown:
            raise UsageError(
                f"unknown synthetic option(s) {', '.join(sorted(unknown))}; known: {', '.join(DEFAULTS)}"
            )
        opts = {**DEFAULTS, **options}
        try:
            self.n_total, self.n_features = int(opts["n"]), int(opts["d"])
            self.noise, self.seed = float(opts["noise"]), int(opts["seed"])
            self.classes = int(opts["classes"])
        except ValueError as exc:
            raise UsageError(f"bad synthetic option value: {exc}") from None
        if opts["split"] not in _SPLITS:
            raise UsageError(f"split must be train or test, not {opts['split']!r}")
        if self.n_total < 1 or self.n_features < 1 or self.noise < 0 or self.seed < 0 or self.classes < 2:
            raise UsageError("synthetic data needs n >= 1, d >= 1, noise >= 0, seed >= 0 and classes >= 2")
        if self.classes > 2 and kind != "classification":
            raise UsageError("classes= applies to synthetic:classification only")
        self.kind, self.split = kind, _SPLITS[opts["split"]]
        self.has_labels = True
        truth = np.random.default_rng([self.seed, 2**31])
        self.weights = truth.standard_normal(self.n_features) / np.sqrt(self.n_features)
        self.bias = float(truth.standard_normal())
        if self.classes > 2:  # unit columns and no bias: every score is N(0, 1), classes balanced
            weights = truth.standard_normal((self.n_features, self.classes))
            self.weights, self.bias = weights / np.linalg.norm(weights, axis=0), np.zeros(self.classes)

    def read(self, start: int, stop: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Rows [start, stop): X of shape (stop-start, d) and y of shape (stop-start,)."""
        d, k = self.n_features, (self.classes if self.classes > 2 else 1)
        first, last = start // CHUNK, -(-stop // CHUNK)
        X = np.empty(((last - first) * CHUNK, d))
        e = np.empty(((last - first) * CHUNK, k))
        for i, chunk in enumerate(range(first, last)):
            rng = np.random.default_rng([self.seed, self.split, chunk])
            X[i * CHUNK : (i + 1) * CHUNK] = rng.standard_normal((CHUNK, d))
            e[i * CHUNK : (i + 1) * CHUNK] = rng.standard_normal((CHUNK, k))
        lo, hi = start - first * CHUNK, stop - first * CHUNK
        X, e = X[lo:hi], e[lo:hi]
        scores = X @ self.weights + self.bias + self.noise * (e if k > 1 else e[:, 0])
        if self.kind == "regression":
            return np.ascontiguousarray(X), scores
        y = np.argmax(scores, axis=1) if k > 1 else scores > 0
        return np.ascontiguousarray(X), y.astype(np.float64)
