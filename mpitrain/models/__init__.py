"""Models: a loss summed over rows and its gradient, on one flat parameter vector. NumPy only."""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

from ..errors import UsageError
from .base import Model
from .linear import LinearModel
from .logistic import LogisticModel
from .mlp import MLP
from .softmax import SoftmaxModel

MODELS: dict[str, type[Model]] = {
    "linear": LinearModel, "logistic": LogisticModel, "softmax": SoftmaxModel, "mlp": MLP,
}
FORMAT_VERSION = 3
READS = (2, 3)  # version 3 added the schema: feature and label names, classes, imputation

__all__ = ["LinearModel", "LogisticModel", "SoftmaxModel", "MLP", "Model", "MODELS",
           "create", "register", "save_arrays", "load"]


def register(cls: type[Model]) -> type[Model]:
    """Add a model class to the registry under ``cls.name`` so that it can be created, saved, loaded
    and used by ``predict`` like the built-in ones; returns ``cls`` (usable as a decorator).

    ValueError if the name is taken by another class or the class lacks the protocol's parts.
    """
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__name__} needs a class attribute name = '...' to be registered")
    missing = [part for part in ("sums", "metric", "predict", "check_labels") if not callable(getattr(cls, part, None))]
    if missing:
        raise ValueError(f"{cls.__name__} lacks {', '.join(missing)}: see the Model protocol in mpitrain.models.base")
    if MODELS.get(name, cls) is not cls:
        raise ValueError(f"model name {name!r} is already registered for {MODELS[name].__name__}; choose another name")
    MODELS[name] = cls
    return cls


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


def save_arrays(model: Model, theta: np.ndarray, extras: Optional[dict[str, np.ndarray]] = None) -> dict[str, np.ndarray]:
    """The plain arrays a model file holds: format, name, options and each named parameter.

    ``extras`` are kept beside them: ``mpitrain.data.Schema.arrays()``, what the model was trained
    on (feature and label names, classes, imputation, the standardisation ``feature_mean`` and
    ``feature_scale``). No object arrays: the file loads with ``allow_pickle=False``.
    """
    options = {k: np.array(v, dtype=np.int64) if isinstance(v, tuple) else np.array(v)
               for k, v in model.options().items()}
    params = {k: v.copy() for k, v in model.layout.views(theta).items()}
    return {"format_version": np.array(FORMAT_VERSION), "model": np.array(model.name),
            "n_features": np.array(model.n_features), **options, **params, **(extras or {})}


def load(path: str) -> tuple[Model, np.ndarray]:
    """Read a model file written by ``train`` (or the run directory holding it): (model, theta of shape (n_params,)).

    ``model.schema`` holds what the file records about the inputs (``mpitrain.data.Schema``),
    which ``mpitrain.predict`` applies to new rows.
    """
    from ..data.schema import Schema

    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "model.npz")):
            raise UsageError(f"the run directory {path!r} has no model.npz: the run has not finished (a stopped run "
                             "continues with train's --resume auto; its checkpoints are under checkpoints/)")
        path = os.path.join(path, "model.npz")
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
    if name not in MODELS:
        raise UsageError(f"{path} holds a {name!r} model, which is not registered here: import the module that "
                         "defines it and call mpitrain.register_model(ItsClass) before loading")
    options = {k: _plain(arrays[k]) for k in MODELS[name].OPTIONS if k in arrays}
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
