"""A training run behind one call: outputs, metrics, checkpoints, resume, signals, the watchdog and
the summary. The command line's ``train`` is this call plus flag parsing and printing.

>>> run = mt.train(model, data, comm, mt.SGD(batch_size=64), steps=500, lr=0.1,
...                out="runs/a", checkpoint_every=100, resume="auto")  # doctest: +SKIP
>>> run.stopped, run.summary["final_train_loss"]  # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence, Union

import numpy as np

from . import metrics as scores
from . import models, optim, rundir
from ._version import __version__
from .algorithms import Reduce, Result, Settings, State, evaluate, fit, steps_per_epoch
from .algorithms.settings import resolve
from .algorithms.config import LR, SOLVERS, LocalSGD, Loop, OneShot, OptionError
from .algorithms.loop import Convergence
from .comm import as_comm
from .data import Dataset
from .guard import blas_threads
from .models import Model
from .outputs import MetricsLog, write_json, write_npz
from .phases import gather_trace, phase_summary
from .selection import Validation
from .supervisor import Supervisor
from .timeline import Timeline

if TYPE_CHECKING:
    from .comm import Comm

MODEL_FILE, METRICS_FILE, SUMMARY_FILE, CHECKPOINTS = "model.npz", "metrics.jsonl", "summary.json", "checkpoints"


@dataclass
class Run:
    """What ``train`` did.

    result : the parameters and timings (``result.theta`` identical on every rank); stopped :
    a stop signal ended the run early, after a checkpoint (resume with ``resume="auto"``);
    checkpoint : the last checkpoint written, or ""; resumed_from : the step a resumed run
    started at (0 for a fresh one); summary : what summary.json holds (empty when stopped);
    stopped_by : which signals stopped it on which ranks ("SIGUSR1 on rank 1").
    """

    result: Result
    stopped: bool = False
    stopped_by: str = ""
    checkpoint: str = ""
    resumed_from: int = 0
    notes: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


def train(
    model: Model,
    data: Dataset,
    comm: "Comm",
    loop: Union[Loop, str],
    settings: Optional[Settings] = None,
    *,
    steps: Optional[int] = None,
    lr: Optional[LR] = None,
    optimizer: Union[str, optim.GradientTransformation, None] = None,
    l2: float = 0.0,
    seed: int = 0,
    reduce: Reduce = Reduce(),
    out: Optional[str] = None,
    test: Optional[Dataset] = None,
    checkpoint_every: int = 0,
    keep_checkpoints: int = 3,
    resume: Optional[str] = None,
    overwrite: bool = False,
    watchdog_seconds: float = 900.0,
    trace: Optional[str] = None,
    progress: Any = False,
    on_log: Optional[Callable[[dict], None]] = None,
    on_note: Optional[Callable[[str], None]] = None,
    validation: Optional[Validation] = None,
    metrics: Sequence[str] = (),
    model_extras: Optional[dict[str, np.ndarray]] = None,
    describe: Optional[dict] = None,
) -> Run:
    """Collective: train ``model`` as ``fit`` does, owning the run's outputs in ``out``.

    With ``out`` (a directory, created by rank 0): ``metrics.jsonl`` as training goes, checkpoints
    in ``out/checkpoints`` every ``checkpoint_every`` steps (0: only when stopped by SIGUSR1 or
    SIGTERM) keeping the newest ``keep_checkpoints``, and at the end ``model.npz`` (with
    ``model_extras``, e.g. the feature scaling) and ``summary.json`` (with ``describe`` merged in).
    ``resume`` is "auto" (the newest valid checkpoint in ``out``, if any) or a checkpoint directory.
    ``out`` belongs to one run (``mpitrain.rundir``): while it trains, rank 0 holds its lock; a new
    run refuses a directory holding another run's outputs unless ``overwrite`` (which removes them).
    A stop signal on any rank stops every rank after the same step; ``Run.stopped`` says so.
    ``watchdog_seconds`` (0: off) ends the job with status 4 when one step hangs. ``on_log`` gets
    each metrics record on rank 0, ``on_note`` each note (a default taken over, a
    resumed checkpoint, a warning) as it arises; ``progress`` True shows a tqdm bar there (or pass an object
    with tqdm's ``update``, ``set_postfix`` and ``close``, such as ``progress.PlainProgress``); ``trace`` names a Chrome
    trace file to write. ``test`` is scored once at the end, with each of ``metrics`` (names of
    ``mpitrain.metrics``, e.g. ("f1", "auc")) in ``summary["test_metrics"]``. ``validation`` (``selection.Validation``)
    scores held-out rows while training (records in metrics.jsonl) and, with early stopping, ends
    the run when they stop improving: ``result.theta`` (and model.npz) then hold the best
    evaluation's parameters, and checkpoints keep the patience counter and the best model. Without ``out`` nothing is written and
    no checkpoint can be taken or resumed.
    """
    t0 = time.perf_counter()
    comm = as_comm(comm)
    if out is None and (checkpoint_every or resume or trace):
        raise OptionError("checkpoint_every, resume and trace need an output directory: pass out=...")
    if not isinstance(checkpoint_every, int) or checkpoint_every < 0:
        raise OptionError(f"checkpoint_every must be an integer >= 0, not {checkpoint_every!r}")
    if not isinstance(keep_checkpoints, int) or keep_checkpoints < 1:
        raise OptionError(f"keep_checkpoints must be an integer >= 1, not {keep_checkpoints!r}")
    options = resolve(loop, settings, model.n_penalized, "train", steps=steps, lr=lr, optimizer=optimizer, l2=l2,
                      seed=seed, reduce=reduce)
    record = asdict(settings) if settings is not None else _record(options)
    k = scores.n_classes_of(model)
    try:
        metrics = scores.check_names(metrics, k > 0, k)
    except scores.MetricError as exc:
        raise OptionError(str(exc)) from None
    if overwrite and resume:
        raise OptionError("overwrite starts a new run and resume continues one; give one of them")
    with _claimed(comm, out, resume, overwrite) as claimed:
        loop, steps, l2 = options["loop"], options["steps"], options["l2"]
        run = Run(Result(np.empty(0)))

        def note(text: str) -> None:
            run.notes.append(text)
            if on_note is not None and comm.rank == 0:
                on_note(text)

        for text in claimed.notes if claimed is not None else []:
            note(text)
        per_epoch = steps_per_epoch(data.n_total, loop.batch_size)
        samples_per_step = loop.batch_size or data.n_total
        metrics_log = MetricsLog(os.path.join(out, METRICS_FILE)) if out is not None and comm.rank == 0 else None
        bar = _progress_bar(comm, progress, steps * samples_per_step)
        supervisor = None
        if out is not None:
            meta = {"run_id": claimed.run_id if claimed is not None else None, "model": model.name,
                    "n_params": model.n_params, "shapes": model.layout.shapes, "model_options": model.options(),
                    "algorithm": loop.name, "n_features": data.n_features, "n_samples": data.n_total,
                    "data_fingerprint": rundir.data_fingerprint(data.X, data.y, data.start, comm, data.weight),
                    "preparation": (describe or {}).get("preparation"), "steps_per_epoch": per_epoch, "settings": record}
            supervisor = Supervisor(comm, os.path.join(out, CHECKPOINTS), meta, every=checkpoint_every,
                                    keep=keep_checkpoints, weight=data.n_local / data.n_total, metrics=metrics_log,
                                    watchdog_seconds=watchdog_seconds, progress=bar, samples_per_step=samples_per_step,
                                    validation=validation)

        def log(record: dict) -> None:
            if metrics_log is not None:
                metrics_log.append(record)
            if comm.rank == 0:
                if bar is not None and "loss" in record:
                    bar.set_postfix(loss=f"{record['loss']:.4g}", **{model.metric_name: f"{record['metric']:.4f}"})
                if on_log is not None:
                    on_log(record)

        if validation is not None:
            validation.steps, validation.on_record = steps, log

        skew = _label_skew(model, data, comm, loop)
        if skew:
            note(f"warning: {skew}")
        try:
            state: Optional[State] = None
            if resume is not None and supervisor is not None:
                state, notes = supervisor.resume(resume, model.n_params)
                for text in notes:
                    note(text)
                if state is not None:
                    state.convergence = _replayed(loop, metrics_log, comm)
                run.resumed_from = state.step if state is not None else 0
            timeline = Timeline(record=trace is not None)
            hooks = supervisor if supervisor is not None else validation
            run.result = fit(model, data, comm, log=log, state=state, hooks=hooks, timeline=timeline, **options)
        finally:
            if supervisor is not None:
                supervisor.close()
            if bar is not None:
                bar.close()
        result = run.result
        phases = phase_summary(comm, result.timeline)
        trace_doc = gather_trace(comm, result.timeline, {"command": "train", "algorithm": loop.name,
                                                         "world_size": comm.size}) if trace else None
        if result.stopped:
            run.stopped, run.checkpoint = True, supervisor.saved_path if supervisor is not None else ""
            run.stopped_by = supervisor.stopped_by() if supervisor is not None else ""
            return run
        if validation is not None and validation.best_theta is not None:  # early stopping: the best evaluation
            result.theta = validation.best_theta.astype(result.theta.dtype)
        train_loss, train_metric = evaluate(model, result.theta, data, comm, l2)
        summary = {
            "mpitrain_version": __version__,
            "model": model.name,
            "algorithm": loop.name,
            "world_size": comm.size,
            "n_samples": data.n_total,
            "n_features": data.n_features,
            "steps": steps,
            "epochs": steps / per_epoch,
            "settings": record,
            "model_options": model.options(),
            "metric_name": model.metric_name,
            "final_train_loss": train_loss,
            "final_train_metric": train_metric,
            "train_seconds": result.seconds,
            "comm_seconds": float(comm.Allreduce(np.array([result.comm_seconds]), "max")[0]),
            "samples_per_second": result.samples / result.seconds if result.seconds > 0 else None,
            "blas_threads": blas_threads(),
            "phases": phases,
            **(describe or {}),
        }
        if result.converged is not None:  # a tol test ran (gd, sgd with tol; the solvers)
            summary["converged"], summary["steps_run"] = result.converged, result.steps
        if validation is not None:
            summary["validation"] = validation.summary()
            summary["ended_early"] = result.ended_early
            summary["steps_run"] = result.steps
        if test is not None:
            summary["test_loss"], summary["test_metric"] = evaluate(model, result.theta, test, comm, l2)
            if metrics:
                summary["test_metrics"] = scores.score(model, result.theta, test, comm, metrics)
        summary["wall_seconds"] = time.perf_counter() - t0
        run.summary = summary
        if out is not None:
            with comm.together():
                if comm.rank == 0:
                    write_npz(os.path.join(out, MODEL_FILE), models.save_arrays(model, result.theta, model_extras))
                    metrics_log.close()
                    write_json(os.path.join(out, SUMMARY_FILE), summary)
                    if trace_doc is not None:
                        write_json(trace, trace_doc)
        return run



@contextmanager
def _claimed(comm: "Comm", out: Optional[str], resume: Optional[str], overwrite: bool) -> Iterator[Optional[rundir.RunDir]]:
    """Collective: ``out`` claimed for this run while the block runs (the RunDir on rank 0, else None)."""
    claimed = None
    if out is not None:
        with comm.together():
            claimed = rundir.claim(out, resume, overwrite) if comm.rank == 0 else None
    try:
        yield claimed
    finally:
        if claimed is not None:
            claimed.release()


SKEWED = 0.3  # total variation distance between a rank's label distribution and the global one


def _label_skew(model: Model, data: Dataset, comm: "Comm", loop: Loop) -> str:
    """Collective: a warning when averaging algorithms meet ranks whose label distributions differ strongly.

    One Allreduce of every rank's per-class counts (size x K); "" when nothing to say.
    """
    k = 2 if model.name == "logistic" else int(getattr(model, "n_classes", 0) or 0)
    if not isinstance(loop, (LocalSGD, OneShot)) or k < 2 or data.y is None or comm.size < 2:
        return ""
    counts = np.zeros((comm.size, k))
    labels = np.clip(data.y.astype(np.int64), 0, k - 1)
    counts[comm.rank] = np.bincount(labels, minlength=k)
    comm.Allreduce(counts)
    overall = counts.sum(axis=0) / max(counts.sum(), 1)
    rows = counts.sum(axis=1)
    shares = counts / np.maximum(rows, 1)[:, None]
    distance = np.where(rows > 0, 0.5 * np.abs(shares - overall).sum(axis=1), 0.0)
    worst = int(np.argmax(distance))
    if distance[worst] <= SKEWED:
        return ""
    top = np.argsort(-shares[worst])[:3]
    mine = ", ".join(f"class {c} {100 * shares[worst, c]:.0f}%" for c in top)
    everyone = ", ".join(f"{100 * overall[c]:.0f}%" for c in top)
    return (f"the ranks hold very different labels (rank {worst}: {mine}; over all ranks: {everyone}; distance "
            f"{distance[worst]:.2f}): {loop.name} averages models trained on different distributions and loses "
            "accuracy on data sorted by label; shuffle the rows, or use sgd")


def _record(options: dict) -> dict:
    """Typed options as plain values, for summary.json and checkpoint manifests."""
    lr, optimizer = options["lr"], options["optimizer"]
    return {"loop": {"name": options["loop"].name, **asdict(options["loop"])}, "steps": options["steps"],
            "lr": getattr(lr, "__name__", "schedule") if callable(lr) else lr,
            "optimizer": optimizer if isinstance(optimizer, str) or optimizer is None else "custom", "l2": options["l2"],
            "seed": options["seed"], "allreduce": options["reduce"].algorithm, "compress": options["reduce"].compress,
            "overlap": options["reduce"].overlap}


def _progress_bar(comm: "Comm", wanted: Any, total: int) -> Any:
    """A tqdm bar counting samples on rank 0 (None elsewhere, when not wanted, or without tqdm);
    ``wanted`` may also be a display object of one's own, used as it is."""
    if comm.rank != 0 or not wanted:
        return None
    if wanted is not True:
        return wanted
    try:
        from tqdm import tqdm
    except ImportError:
        print("mpitrain: a progress bar needs tqdm (pip install tqdm); printing epoch lines instead", file=sys.stderr)
        return None
    return tqdm(total=total, unit="samples", unit_scale=True, dynamic_ncols=True, file=sys.stderr)


def _replayed(loop: Loop, metrics_log: Optional[MetricsLog], comm: "Comm") -> Optional[np.ndarray]:
    """Collective, on resume: the tol test's (best, count) after the training losses that rank 0's
    resumed metrics.jsonl holds (the checkpoint keeps them), or None without a tol test."""
    tol = getattr(loop, "tol", None)
    if tol is None or isinstance(loop, SOLVERS):  # a solver's tol tests the gradient, and its memory is checkpointed
        return None
    rule = Convergence(tol, loop.n_iter_no_change)
    for line in metrics_log.lines if metrics_log is not None else []:
        record = json.loads(line)
        if "loss" in record and "epoch" in record:
            rule.update(record["loss"])
    return comm.Bcast(np.array([rule.best, rule.count], dtype=np.float64))
