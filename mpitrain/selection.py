"""Model selection while training: a validation score every few steps, and early stopping.

Each rank scores its own validation rows; the loss and metric sums travel in one small
Allreduce, so every rank sees the same values and takes the same decision at the same step.

>>> validation = Validation(model, val, comm, every=50, early=EarlyStopping("val_loss", patience=5))  # doctest: +SKIP
>>> mt.train(model, data, comm, mt.SGD(64), steps=5000, lr=0.1, validation=validation)  # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import numpy as np

from . import metrics as scores
from .algorithms import Hooks, OptionError, evaluate
from .data import Dataset
from .metrics import MAXIMISED
from .models import Model

if TYPE_CHECKING:
    from .comm import Comm


@dataclass(frozen=True)
class EarlyStopping:
    """End training when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    evaluations in a row; the parameters of the best evaluation are the result.

    monitor : "val_loss" or "val_<metric>": the model's (val_accuracy, val_rmse) or one of the
    validation's ``metrics`` (val_f1, val_auc, ...); larger is better for those in ``metrics.MAXIMISED``.
    """

    monitor: str = "val_loss"
    patience: int = 5
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 1:
            raise OptionError(f"patience must be an integer >= 1, not {self.patience!r}")
        if not (isinstance(self.min_delta, (int, float)) and self.min_delta >= 0):
            raise OptionError(f"min_delta must be a number >= 0, not {self.min_delta!r}")
        if not self.monitor.startswith("val_"):
            raise OptionError(f"monitor must be val_loss or val_<metric>, not {self.monitor!r}")


class Validation(Hooks):
    """Scores ``val`` every ``every`` steps (and at the last); with ``early``, keeps the best parameters.

    ``on_record`` (rank 0) receives {"step", "val_loss", "val_<metric>"} at each evaluation, with a
    "val_<name>" for each of ``metrics`` (names of ``mpitrain.metrics``, e.g. ("f1", "auc")).
    ``best_theta`` (n_params,), ``best``, ``best_step`` and ``bad`` (evaluations without
    improvement) are the state a checkpoint keeps.
    """

    def __init__(self, model: Model, val: Dataset, comm: "Comm", every: int, l2: float = 0.0,
                 early: Optional[EarlyStopping] = None, on_record: Optional[Callable[[dict], None]] = None,
                 metrics: Sequence[str] = ()) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise OptionError(f"eval_every must be an integer >= 1, not {every!r}")
        metric = f"val_{model.metric_name}"
        k = scores.n_classes_of(model)
        try:
            self.names = tuple(n for n in scores.check_names(metrics, k > 0, k) if n != model.metric_name)
        except scores.MetricError as exc:
            raise OptionError(str(exc)) from None
        scored = ("val_loss", metric, *(f"val_{n}" for n in self.names))
        if early is not None and early.monitor not in scored:
            raise OptionError(f"monitor {early.monitor!r} is not scored for this model; use one of {', '.join(scored)}")
        self.model, self.val, self.comm, self.every, self.l2, self.early = model, val, comm, every, l2, early
        self.on_record, self.metric = on_record, metric
        self.sign = -1.0 if early is not None and early.monitor.removeprefix("val_") in MAXIMISED else 1.0
        self.best, self.best_step, self.bad = float("inf"), 0, 0
        self.best_theta: Optional[np.ndarray] = None
        self.last: dict = {}
        self.steps = 0  # the run's last step: always scored

    def evaluate(self, steps_done: int, theta: np.ndarray) -> bool:
        """Collective: score theta if due; True when early stopping ends the run."""
        if steps_done % self.every and steps_done != self.steps:
            return False
        loss, metric = evaluate(self.model, theta, self.val, self.comm, self.l2)
        self.last = {"step": steps_done, "val_loss": float(loss), self.metric: float(metric)}
        named = scores.score(self.model, theta, self.val, self.comm, self.names)
        self.last.update({f"val_{name}": value for name, value in named.items()})
        if self.on_record is not None and self.comm.rank == 0:
            self.on_record(dict(self.last))
        if self.early is None:
            return False
        value = self.sign * self.last[self.early.monitor]
        if value < self.best - self.early.min_delta:
            self.best, self.best_step, self.bad = value, steps_done, 0
            self.best_theta = theta.copy()
            return False
        self.bad += 1
        return self.bad >= self.early.patience

    def summary(self) -> dict:
        """What summary.json records: the last scores and, with early stopping, the best."""
        out = dict(self.last)
        if self.early is not None and self.best_theta is not None:
            out.update({"monitor": self.early.monitor, "best_step": self.best_step,
                        "best_value": self.sign * self.best})
        return out

    # -- checkpoints: the state a resumed run needs to keep its patience and its best model ------
    def state(self, n_params: int) -> dict[str, np.ndarray]:
        """Named arrays for a checkpoint."""
        best = self.best_theta if self.best_theta is not None else np.full(n_params, 0.0)
        return {"selection": np.array([self.best if np.isfinite(self.best) else np.finfo(float).max,
                                       self.best_step, self.bad, self.best_theta is not None], dtype=np.float64),
                "best_theta": np.asarray(best, dtype=np.float64)}

    def restore(self, arrays: dict[str, np.ndarray], dtype: np.dtype) -> None:
        """Take back what ``state`` saved."""
        best, step, bad, has = arrays["selection"]
        self.best = float("inf") if best == np.finfo(float).max else float(best)
        self.best_step, self.bad = int(step), int(bad)
        self.best_theta = arrays["best_theta"].astype(dtype) if has else None
