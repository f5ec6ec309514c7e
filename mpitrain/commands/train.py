"""``train``: read the data, resolve the defaults, call ``mpitrain.train`` into --out, print the outcome."""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict
from typing import Callable, Optional

from .. import configfile, flags, models, rundir
from ..comm import Comm
from ..csvlog import CsvLog
from ..tensorboard import TensorBoardLog
from ..algorithms import Settings, steps_per_epoch
from ..data import Dataset, Schema, load
from ..guard import EXIT_RESUMABLE, blas_threads, startup_warnings
from ..models import Model
from ..outputs import check_distinct, spec_files
from ..phases import describe
from ..progress import PlainProgress, has_terminal
from ..run import Run, train
from ..selection import EarlyStopping, Validation
from ..selectflags import take_weight_column, weigh
from . import say

LINE_SECONDS = 1.0  # the fastest rate of progress lines on stderr


def run(args: argparse.Namespace, comm: Comm) -> int:
    """The train subcommand: defaults from the data, then mt.train into --out (claimed for this run)."""
    for warning in startup_warnings(comm.ranks_on_node(), blas_threads(), os.cpu_count()):
        say(comm, f"mpitrain: warning: {warning}", sys.stderr)
    read = read_inputs(args, comm)
    if read is None:
        return 0  # --print-config printed the configuration
    data, test, val, schema = read
    with comm.together():
        model = models.create(args.model, data.n_features, **flags.model_options(args, schema))
    for name, held_out in (("test", test), ("validation", val)):
        if held_out is not None and held_out.y is not None:
            bad = model.check_labels(held_out.y, held_out.start)
            comm.raise_if_any(f"{name} data: {bad}" if bad else "")
    per_epoch = steps_per_epoch(data.n_total, args.batch_size)
    steps = args.steps if args.steps is not None else (args.epochs or 10) * per_epoch
    settings = flags.settings(args, steps, args.batch_size or data.n_total)
    if args.scale_lr:
        say(comm, f"linear scaling rule: lr {args.lr:g} x {args.batch_size or data.n_total} / {args.scale_lr} "
                  f"= {settings.lr:g}")

    watched = has_terminal() if args.progress is None else args.progress
    progress = False if args.quiet else (True if watched else PlainProgress(steps * (args.batch_size or data.n_total)))
    line = progress_lines(model, steps, quiet=args.quiet or progress is True)
    with comm.together():  # a missing tensorboardX: one message, every rank exits
        logs = [log(path) for log, path in ((CsvLog, args.log_csv), (TensorBoardLog, args.tensorboard))
                if path and comm.rank == 0]
    line = tee(line, *logs)
    say(comm, f"mpitrain: writing to {args.out}", sys.stderr)  # once every input has been checked
    validation = None
    if val is not None:
        early = (EarlyStopping(args.monitor or "val_loss", args.patience or 5, args.min_delta or 0.0)
                 if args.early_stopping else None)
        validation = Validation(model, val, comm, args.eval_every or steps_per_epoch(data.n_total, args.batch_size),
                                args.l2, early, metrics=args.metrics or ())
    try:
        done = train(model, data, comm, args.algorithm, settings, out=args.out, test=test,
                     checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints,
                     resume=args.resume, overwrite=args.overwrite, watchdog_seconds=args.watchdog_seconds,
                     trace=args.trace, progress=progress, on_log=line,
                     on_note=lambda text: say(comm, f"mpitrain: {text}", sys.stderr), validation=validation,
                     metrics=args.metrics or (), model_extras=schema.arrays(),
                     describe=record(args, data, schema, settings))
    finally:
        for log in logs:
            log.close()
    if done.stopped:
        say(comm, f"mpitrain: stopped by {done.stopped_by} after step {done.result.steps} of {steps}; checkpoint "
                  f"{done.checkpoint}; continue with the same command and --resume auto "
                  f"(exit status {EXIT_RESUMABLE})", sys.stderr)
        return EXIT_RESUMABLE
    say(comm, outcome(args, comm, model, data.n_total, done, test is not None))
    if getattr(done.result, "message", "") and not args.quiet:
        say(comm, f"{args.algorithm}: {done.result.message}", sys.stderr)
    if not args.quiet:
        say(comm, describe(done.summary["phases"]), sys.stderr)
    return 0


Inputs = tuple[Dataset, Optional[Dataset], Optional[Dataset], Schema]


def read_inputs(args: argparse.Namespace, comm: Comm) -> Optional[Inputs]:
    """Collective: (training, test, validation rows, schema) prepared as the flags say, after the
    defaults that depend on the data are resolved and --out is checked against the inputs; None
    when --print-config only prints the configuration."""
    if args.data is None:
        args.train_parser.error("--data SPEC is required (or data = \"SPEC\" in --config)")
    data = load(args.data, comm, **flags.data_options(args))
    defaults = flags.resolve(args, comm, data)
    flags.check(args.train_parser, args)
    if args.print_config:
        say(comm, configfile.to_toml(configfile.effective_config(args, args.train_parser)).rstrip())
        return None
    if defaults:
        say(comm, "mpitrain: defaults: " + "; ".join(defaults), sys.stderr)
    with comm.together():
        outputs = {f"--out's {name}": os.path.join(args.out, name)
                   for name in ("model.npz", "metrics.jsonl", "summary.json", rundir.RUN_FILE)}
        inputs = {f"--{flag.replace('_', '-')} {spec}": path for flag in ("data", "test_data")
                  for spec in [getattr(args, flag)] if spec for path in spec_files(spec)}
        written = {flag: path for flag, path in (("--trace", args.trace), ("--log-csv", args.log_csv)) if path}
        check_distinct({**outputs, **written}, inputs)
    test = val = None
    if args.test_data:
        test = load(args.test_data, comm, n_features=data.n_features, **flags.data_options(args))
    if args.val_data:
        val = load(args.val_data, comm, n_features=data.n_features, **flags.data_options(args))
    data, test, val = take_weight_column(args, data, test, val)
    data, test, val, schema = flags.prepare(args, comm, data, test, val)
    data, test, val = weigh(args, comm, 0 if schema.classes is None else schema.classes.size, data, test, val)
    if args.quiet:
        for note in data.notes:
            say(comm, f"mpitrain: note: {args.data}: {note}", sys.stderr)
    else:
        say(comm, flags.describe_data(data, schema))
    return data, test, val, schema


def record(args: argparse.Namespace, data: Dataset, schema: Schema, settings: Settings) -> dict:
    """What summary.json records about the command: the data, its schema, the effective
    configuration, the settings and the preparation."""
    return {"data": args.data, "test_data": args.test_data, "label_column": args.label_column,
            "data_schema": {**schema.describe(), "notes": list(data.notes)},
            "config": configfile.effective_config(args, args.train_parser),
            "settings": {**asdict(settings), "lr_given": args.lr, "scale_lr_reference_batch": args.scale_lr},
            "preparation": {"test_fraction": args.test_fraction, "split_seed": args.split_seed,
                            "standardize": args.standardize, "impute": args.impute, "dtype": args.dtype,
                            "val_fraction": args.val_fraction, "val_data": args.val_data,
                            "weight_column": args.weight_column, "class_weight": args.class_weight}}


def outcome(args: argparse.Namespace, comm: Comm, model: Model, n_total: int, done: Run, tested: bool) -> str:
    """The line that ends a finished run: steps, time, losses and metrics, and what was written."""
    summary = done.summary
    test_part = f", test {model.metric_name} {summary['test_metric']:.4f}" if tested else ""
    test_part += "".join(f", test {name} {value:.4f}" for name, value in summary.get("test_metrics", {}).items()
                         if name != model.metric_name)
    if args.algorithm in ("gd", "sgd") and "converged" in summary:
        test_part += (f"; converged (--tol {args.tol:g}) after {summary['steps_run']} steps" if summary["converged"]
                      else f"; not converged (--tol {args.tol:g}) in {summary['steps_run']} steps")
    if summary.get("ended_early"):
        best = summary["validation"]
        test_part += (f"; early stopping after step {done.result.steps}: the best {best['monitor']} "
                      f"{best['best_value']:.6g} was at step {best['best_step']}, and that model was saved")
    return (f"trained {args.model} with {args.algorithm} on {comm.size} rank(s): {n_total} samples, "
            f"{done.result.steps - done.resumed_from} steps in {done.result.seconds:.2f}s "
            f"({summary['comm_seconds']:.2f}s communicating); train loss {summary['final_train_loss']:.6g}, "
            f"train {model.metric_name} {summary['final_train_metric']:.4f}{test_part}; "
            f"wrote {os.path.join(args.out, '')}{{model.npz,metrics.jsonl,summary.json}}"
            + (f" and {args.trace}" if args.trace else ""))


def tee(*callbacks: Callable[[dict], None]) -> Callable[[dict], None]:
    """One ``on_log`` that calls each of ``callbacks`` in turn."""
    def both(record: dict) -> None:
        for callback in callbacks:
            callback(record)

    return both


def progress_lines(model: Model, steps: int, quiet: bool) -> Callable[[dict], None]:
    """``on_log`` for the console: at most one line per LINE_SECONDS on stderr, and the last step's
    (metrics.jsonl has every record); validation records always; nothing when ``quiet``."""
    printed = [-LINE_SECONDS]

    def line(record: dict) -> None:
        if quiet:
            return
        if "val_loss" in record:
            print(f"step {record['step']:>7}  validation: " + "  ".join(f"{k} {v:.6g}" for k, v in record.items()
                                                                    if k != "step"), file=sys.stderr, flush=True)
            return
        if record["step"] == steps or record["seconds"] - printed[0] >= LINE_SECONDS:
            printed[0] = record["seconds"]
            gradient = f"  |grad|max {record['gradient_max']:.3g}" if "gradient_max" in record else ""
            print(f"step {record['step']:>7}  epoch {record['epoch']:8.2f}  loss {record['loss']:.6g}  "
                  f"{model.metric_name} {record['metric']:.4f}{gradient}  {record['seconds']:.2f}s", file=sys.stderr,
                  flush=True)

    return line
