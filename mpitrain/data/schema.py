"""What a model file records about its inputs, so that prediction treats rows as training did.

Feature and label names, the classes (the labels behind indices 0..K-1), the values that fill
missing cells and the standardisation. ``transform`` applies the last two to new rows; the
arrays are plain (no pickling) and go into ``model.npz``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import UsageError
from .prepare import scale_rows


@dataclass
class Schema:
    """The inputs a model was trained on.

    feature_names : tuple of d names, or None when the data had none (npy, synthetic, no header)
    label_name : the label column's name, or None
    classes : shape (K,), float64 or str: the label of class index k, or None for regression
    impute : "mean", "median" or "zero", with ``fill`` of shape (d,): the value of a missing cell
    mean, scale : shape (d,) each: the standardisation x -> (x - mean) / scale, or None
    """

    feature_names: Optional[tuple[str, ...]] = None
    label_name: Optional[str] = None
    classes: Optional[np.ndarray] = None
    impute: Optional[str] = None
    fill: Optional[np.ndarray] = None
    mean: Optional[np.ndarray] = None
    scale: Optional[np.ndarray] = None

    def transform(self, X: np.ndarray) -> np.ndarray:
        """New rows (n, d) as training saw them: missing cells filled, then standardised (a new array).

        Sparse rows (scipy.sparse CSR) are only scaled: a model that fills missing cells or centres
        its inputs (one trained on dense rows) refuses them.
        """
        if not isinstance(X, np.ndarray):
            if self.fill is not None or (self.mean is not None and np.any(self.mean)):
                raise UsageError("this model fills or centres its inputs, which sparse rows cannot take; "
                                 "read the rows dense (sparse=False, --no-sparse)")
            return X if self.scale is None else scale_rows(X, np.zeros_like(self.scale), self.scale)
        X = np.array(X, dtype=np.float64)
        if self.fill is not None:
            missing = np.isnan(X)
            X[missing] = np.broadcast_to(self.fill, X.shape)[missing]
        if self.mean is not None and self.scale is not None:
            X -= self.mean
            X /= self.scale
        return X

    def arrays(self) -> dict[str, np.ndarray]:
        """The entries of ``model.npz`` (only those that are set)."""
        out: dict[str, np.ndarray] = {}
        if self.feature_names is not None:
            out["feature_names"] = np.array(self.feature_names, dtype=str)
        if self.label_name is not None:
            out["label_name"] = np.array(self.label_name)
        if self.classes is not None:
            out["classes"] = np.asarray(self.classes)
        if self.impute is not None and self.fill is not None:
            out["impute"], out["impute_values"] = np.array(self.impute), np.asarray(self.fill, dtype=np.float64)
        if self.mean is not None and self.scale is not None:
            out["feature_mean"], out["feature_scale"] = self.mean, self.scale
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "Schema":
        """The Schema kept in a model file's arrays (missing entries are None)."""
        names = arrays.get("feature_names")
        return cls(
            feature_names=None if names is None else tuple(str(n) for n in names),
            label_name=str(arrays["label_name"]) if "label_name" in arrays else None,
            classes=arrays.get("classes"),
            impute=str(arrays["impute"]) if "impute" in arrays else None,
            fill=arrays.get("impute_values"),
            mean=arrays.get("feature_mean"),
            scale=arrays.get("feature_scale"),
        )

    def describe(self) -> dict:
        """The schema as JSON-ready values (for summary.json)."""
        classes = None if self.classes is None else [c.item() if hasattr(c, "item") else c for c in self.classes]
        return {"label_column": self.label_name, "feature_names": None if self.feature_names is None else list(self.feature_names),
                "classes": classes, "impute": self.impute, "standardize": self.mean is not None}
