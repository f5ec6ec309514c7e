"""Checks for users' own models and training code.

- ``check_model(model, X, y)`` checks a model against the protocol (``mpitrain.models.base.Model``):
  its gradient against finite differences of its loss sum, that ``sums`` overwrites ``grad``
  (it is pre-filled with NaN), and that every part handed to ``ready`` is a view inside ``grad``.
- ``assert_same_at_world_sizes(fn, sizes)`` runs ``fn(comm) -> array`` under ``mpiexec`` at each
  world size and checks that every size gives the same result (bitwise by default).

>>> from mpitrain.testing import check_model
>>> check_model(MyModel(n_features=4), X, y)  # doctest: +SKIP
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import tempfile
from typing import Any, Callable, Optional, Sequence

import numpy as np


class ModelCheckError(AssertionError):
    """A model that breaks the protocol; the message says which rule and how to fix it."""


def check_model(model: Any, X: np.ndarray, y: np.ndarray, seed: int = 0, rtol: float = 1e-5) -> None:
    """Check ``model`` on rows X (n, n_features) and labels y (n,); ModelCheckError on a violation.

    The gradient is compared with central finite differences of the loss sum at a random point
    near ``model.init(seed)``, in float64, to relative tolerance ``rtol`` (on the gradient's norm).
    """
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n_params = model.layout.size
    if X.ndim != 2 or X.shape[1] != model.n_features:
        raise ModelCheckError(f"X has shape {X.shape}; the model expects (n, {model.n_features})")
    message = model.check_labels(y, 0)
    if message:
        raise ModelCheckError(f"the model rejects these labels: {message}")
    rng = np.random.default_rng(seed)
    theta = np.asarray(model.init(seed), dtype=np.float64) + 0.1 * rng.standard_normal(n_params)
    if theta.shape != (n_params,):
        raise ModelCheckError(f"init returned shape {theta.shape}; the layout needs ({n_params},)")

    clean = np.zeros(n_params)
    sums = model.sums(theta, X, y, clean)
    if len(sums) != 2 or not all(np.isfinite(float(v)) for v in sums):
        raise ModelCheckError(f"sums must return two finite numbers (loss sum, metric sum), not {sums!r}")
    dirty = np.full(n_params, np.nan)
    model.sums(theta, X, y, dirty)
    if not np.array_equal(dirty, clean):
        raise ModelCheckError(
            "sums must overwrite grad (grad[...] = ..., or out=): with grad pre-filled with NaN it left "
            f"{int(np.count_nonzero(dirty != clean))} of {n_params} entries different (grad += ... accumulates "
            "the previous step's gradient)")

    parts: list[np.ndarray] = []
    ready_grad = np.zeros(n_params)
    model.sums(theta, X, y, ready_grad, parts.append)
    for part in parts:
        if not (isinstance(part, np.ndarray) and np.shares_memory(part, ready_grad) and part.flags.c_contiguous):
            raise ModelCheckError("every array handed to ready must be a contiguous view inside grad "
                                  "(for example layout.views(grad)['W'])")
    if not np.array_equal(ready_grad, clean):
        raise ModelCheckError("sums gives a different gradient when ready is passed")

    step = 1e-6 * max(1.0, float(np.max(np.abs(theta))))
    numeric = np.empty(n_params)
    for i in range(n_params):
        up, down = theta.copy(), theta.copy()
        up[i] += step
        down[i] -= step
        numeric[i] = (model.sums(up, X, y)[0] - model.sums(down, X, y)[0]) / (2 * step)
    error = np.linalg.norm(numeric - clean) / max(np.linalg.norm(numeric), 1e-12)
    if not error <= rtol:
        worst = int(np.argmax(np.abs(numeric - clean)))
        raise ModelCheckError(
            f"the gradient differs from finite differences of the loss sum by {error:.2e} (relative; allowed "
            f"{rtol:g}); worst at theta[{worst}]: {clean[worst]:.6g} vs {numeric[worst]:.6g}. The gradient must be "
            "of the loss SUM over the rows, not the mean")


def assert_same_at_world_sizes(fn: Callable[[Any], Any], sizes: Sequence[int] = (1, 2, 3), *, rtol: float = 0.0,
                               atol: float = 0.0, timeout: float = 300.0, mpiexec: Optional[list[str]] = None) -> None:
    """Run ``fn(comm)`` under ``mpiexec -n k`` for each k in ``sizes``; AssertionError unless all agree.

    ``fn`` must be importable (a module-level function) and return an array (or a dict of arrays)
    that is the same on every rank; rank 0's result at each size is compared with the first
    size's: bitwise by default, or to ``rtol``/``atol``.
    """
    target = _importable(fn)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for size in sizes:
            out = os.path.join(folder, f"np{size}.npz")
            command = [*(mpiexec or _mpiexec()), "-n", str(size), sys.executable, "-m", "mpitrain.testing", target, out]
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
                                      os.getcwd(), os.environ.get("PYTHONPATH", "")]))})
            if done.returncode != 0:
                raise AssertionError(f"{' '.join(command)} failed with status {done.returncode}:\n{done.stderr[-3000:]}")
            with np.load(out) as f:
                results.append({k: f[k] for k in f.files})
    first = results[0]
    for size, result in zip(sizes[1:], results[1:]):
        for key, value in first.items():
            if rtol == 0 and atol == 0:
                if not np.array_equal(result[key], value):
                    raise AssertionError(f"{target}: {key} at {size} ranks differs from {sizes[0]} rank(s) by up to "
                                         f"{np.max(np.abs(result[key] - value)):.3g}")
            else:
                np.testing.assert_allclose(result[key], value, rtol=rtol, atol=atol,
                                           err_msg=f"{target}: {key} at {size} ranks vs {sizes[0]} rank(s)")


def _importable(fn: Callable) -> str:
    """'module:qualname' (or 'path/to/file.py:qualname' for __main__) naming ``fn``."""
    module = fn.__module__
    if module == "__main__":
        module = os.path.abspath(sys.modules["__main__"].__file__ or "")
    if "<" in fn.__qualname__:
        raise ValueError(f"{fn.__qualname__} is not importable: define it at module level")
    return f"{module}:{fn.__qualname__}"


def _mpiexec() -> list[str]:
    from .bench.train import mpiexec

    return mpiexec()


def _load(target: str) -> Callable:
    module, _, name = target.rpartition(":")
    if module.endswith(".py"):
        spec = importlib.util.spec_from_file_location("_mpitrain_user", module)
        loaded = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(loaded)  # type: ignore[union-attr]
    else:
        loaded = importlib.import_module(module)
    for part in name.split("."):
        loaded = getattr(loaded, part)
    return loaded  # type: ignore[return-value]


if __name__ == "__main__":  # one size of assert_same_at_world_sizes: python -m mpitrain.testing MOD:FN OUT.npz
    from . import world

    comm = world()
    value = _load(sys.argv[1])(comm)
    arrays = value if isinstance(value, dict) else {"result": value}
    if comm.rank == 0:
        np.savez(sys.argv[2], **{k: np.asarray(v) for k, v in arrays.items()})
