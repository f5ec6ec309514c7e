"""Models: a loss summed over rows and its gradient, on one flat parameter vector. NumPy only."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional

import numpy as np

from ..errors import UsageError
from .base import Model
from .linear import LinearRegression
from .logistic import LogisticRegression
from .mlp import MLP
from .softmax import SoftmaxRegression

if TYPE_CHECKING:
    from ..data.schema import Schema

MODELS: dict[str, type[Model]] = {
    "linear": LinearRegression, "logistic": LogisticRegression, "softmax": SoftmaxRegression, "mlp": MLP,
}
FORMAT_VERSION = 3
READS = (2, 3)  # version 3 added the schema: feature and label names, classes, imputation

__all__ = ["LinearRegression", "LogisticRegression", "SoftmaxRegression", "MLP", "Model", "MODELS",
           "create", "save_arrays", "load"]


def create(name: str, n_features: int, **options) -> Model:  # type: ignore[no-untyped-def]
    """A model by name ('linear', 'logistic', 'softmax' or 'mlp') for ``n_features`` inputs.

    ``options`` are the model's keywords: ``n_classes`` (softmax, mlp), ``hidden``, ``activation``
    and ``loss`` (mlp). UsageError for an unknown name, option or value.
    """
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    cls = MODELS[name]
    unknown = sorted(set(options) - set(cls.OPTIONS))
    if unknown:
        takes = f"it takes {', '.join(cls.OPTIONS)}" if cls.OPTIONS else "it takes none"
        raise UsageError(f"model {name!r} has no option {', '.join(unknown)}; {takes}")
    try:
        return cls(n_features, **options)
    except ValueError as exc:
        raise UsageError(f"model {name!r}: {exc}") from None


def save_arrays(model: Model, theta: np.ndarray, schema: Optional["Schema"] = None) -> dict[str, np.ndarray]:
    """The plain arrays a model file holds: format, name, options and each named parameter.

    With ``schema`` (``mpitrain.data.Schema``) the file also keeps the feature and label names,
    the classes, the imputation and the standardisation the model was trained with. No object
    arrays: it loads with ``allow_pickle=False``.
    """
    options = {k: np.array(v) for k, v in model.options().items()}
    if "hidden" in options:
        options["hidden"] = np.array(model.options()["hidden"], dtype=np.int64)
    params = {k: v.copy() for k, v in model.layout.views(theta).items()}
    extra = {} if schema is None else schema.arrays()
    return {"format_version": np.array(FORMAT_VERSION), "model": np.array(model.name),
            "n_features": np.array(model.n_features), **options, **params, **extra}


def load(path: str) -> tuple[Model, np.ndarray]:
    """Read a model file written by ``train``: (model, theta of shape (n_params,)).

    ``model.schema`` holds what the file records about the inputs (``mpitrain.data.Schema``),
    which ``mpitrain.predict`` applies to new rows.
    """
    from ..data.schema import Schema

    if not os.path.isfile(path):
        raise UsageError(f"model file {path!r} does not exist (train writes OUT/model.npz)")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError) as exc:
        raise UsageError(f"{path} is not a readable model file: {exc}") from None
    missing = {"format_version", "model", "n_features"} - set(arrays)
    if missing:
        raise UsageError(f"{path} lacks {', '.join(sorted(missing))}; was it written by mpitrain train?")
    if int(arrays["format_version"]) not in READS:
        raise UsageError(f"{path} has format version {int(arrays['format_version'])}; this mpitrain reads "
                         f"{' and '.join(map(str, READS))}")
    name = str(arrays["model"])
    options = {k: _plain(arrays[k]) for k in MODELS[name].OPTIONS if k in arrays} if name in MODELS else {}
    model = create(name, int(arrays["n_features"]), **options)
    try:
        theta = model.layout.pack(arrays)
    except ValueError as exc:
        raise UsageError(f"{path}: {exc}") from None
    model.schema = Schema.from_arrays(arrays)
    return model, theta


def _plain(value: np.ndarray):  # type: ignore[no-untyped-def]
    """A saved option back as Python: a str or int for a 0-d array, a tuple of ints otherwise."""
    return value.item() if value.ndim == 0 else tuple(int(v) for v in value)
