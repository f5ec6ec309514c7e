"""Models: a loss summed over rows and its gradient, on one flat parameter vector. NumPy only."""
from __future__ import annotations

import os
from typing import Union

import numpy as np

from ..errors import UsageError
from .linear import LinearRegression
from .logistic import LogisticRegression

Model = Union[LinearRegression, LogisticRegression]
MODELS = {"linear": LinearRegression, "logistic": LogisticRegression}
FORMAT_VERSION = 1

__all__ = ["LinearRegression", "LogisticRegression", "Model", "MODELS", "create", "save_arrays", "load"]


def create(name: str, n_features: int) -> Model:
    """A model by name ('linear' or 'logistic') for ``n_features`` inputs."""
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name](n_features)


def save_arrays(model: Model, theta: np.ndarray) -> dict[str, np.ndarray]:
    """The plain arrays a model file holds (no object arrays, so no pickling on load)."""
    return {
        "format_version": np.array(FORMAT_VERSION),
        "model": np.array(model.name),
        "coef": theta[:-1].copy(),
        "intercept": np.array(theta[-1]),
    }


def load(path: str) -> tuple[Model, np.ndarray]:
    """Read a model file written by ``train``: (model, theta of shape (n_features + 1,))."""
    if not os.path.isfile(path):
        raise UsageError(f"model file {path!r} does not exist (train writes OUT/model.npz)")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError) as exc:
        raise UsageError(f"{path} is not a readable model file: {exc}") from None
    missing = {"format_version", "model", "coef", "intercept"} - set(arrays)
    if missing:
        raise UsageError(f"{path} lacks {', '.join(sorted(missing))}; was it written by mpitrain train?")
    if int(arrays["format_version"]) != FORMAT_VERSION:
        raise UsageError(f"{path} has format version {int(arrays['format_version'])}; this mpitrain reads {FORMAT_VERSION}")
    model = create(str(arrays["model"]), arrays["coef"].shape[0])
    return model, np.append(arrays["coef"], arrays["intercept"]).astype(np.float64)
