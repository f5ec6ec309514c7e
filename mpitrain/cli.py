"""``python -m mpitrain COMMAND``: every rank runs the same command; rank 0 talks.

Each command parses its flags (``flags.py`` holds train's), calls the library and prints.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
from dataclasses import asdict
from typing import NoReturn, Optional, Sequence

from . import collectives, configfile, doctor, explain, flags, models, rundir
from ._version import __version__
from .algorithms import OptionError, steps_per_epoch
from .bench import allreduce as bench_allreduce
from .bench import train as bench_train
from .comm import Comm, world
from .data import load
from .errors import JobError, UsageError
from .guard import (EXIT_RESUMABLE, blas_threads, guard_signals, limit_blas_threads, refuse_mismatched_launch,
                    start_up_watchdog, startup_warnings)
from .inference import predict
from .outputs import check_distinct, spec_files, write_npy
from .phases import describe
from .plot import plot
from .progress import PlainProgress, has_terminal
from .run import train
from .selection import EarlyStopping, Validation
from .selectflags import take_weight_column, weigh


LINE_SECONDS = 1.0  # the fastest rate of progress lines on stderr


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help and errors are printed by rank 0 only (all ranks exit alike).

    A usage error is one line (with the closest valid value for a mistyped choice) and a pointer
    to --help, not the whole usage block.
    """

    def _print_message(self, message: str, file=None) -> None:  # type: ignore[no-untyped-def]
        if launcher_rank() == 0:
            super()._print_message(message, file)

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        wrong = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if wrong:
            choices = re.findall(r"'?([^',]+)'?(?:, |$)", wrong.group(2))
            close = difflib.get_close_matches(wrong.group(1), [c.strip() for c in choices], 1)
            if close:
                message += f"; did you mean {close[0]!r}?"
        self.exit(2, f"{self.prog}: error: {message}\n(see {self.prog} --help)\n")


def launcher_rank() -> int:
    """This process's rank as the launcher told it (0 when started alone); starts no MPI."""
    for var in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def build_parser() -> Parser:
    """The command-line grammar."""
    prog = "mpitrain" if os.path.basename(sys.argv[0]) == "mpitrain" else "python -m mpitrain"
    parser = Parser(prog=prog, description="Data-parallel training of NumPy models over MPI.")
    parser.add_argument("--version", action="version", version=f"mpitrain {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    train_parser = sub.add_parser("train", help="train a model; rank 0 writes OUT/model.npz, metrics.jsonl, summary.json")
    flags.add_train_flags(train_parser)
    pred = sub.add_parser("predict", help="distributed inference; rank 0 writes the predictions in row order")
    pred.add_argument("--model", required=True, metavar="MODEL.npz", help="a model file written by train")
    pred.add_argument("--data", required=True, metavar="SPEC", help="the rows to predict (as train's --data)")
    pred.add_argument("--label-column", metavar="NAME|INDEX", help="CSV label column, if the file has one")
    pred.add_argument("--out", required=True, metavar="FILE.npy", help="where rank 0 writes the predictions")
    flags.add_data_flags(pred, "predict")
    sub.add_parser("info", help="versions, MPI library, world size, thread level and processor names")
    explain.add_parser(sub, Parser)
    doctor.add_parser(sub)
    drawing = sub.add_parser("plot", help="PNG charts of a run directory or of a `bench train` JSON (needs matplotlib)")
    drawing.add_argument("path", metavar="RUN_DIR|BENCH.json")
    bench = sub.add_parser("bench", help="benchmarks: `bench allreduce` (run under mpiexec) and `bench train` "
                                         "(throughput; launches its own mpiexec jobs)")
    benches = bench.add_subparsers(dest="bench", required=True, parser_class=Parser)
    bench_allreduce.add_parser(benches)
    bench_train.add_parser(benches)
    parser.set_defaults(train_parser=train_parser)
    return parser


def say(comm: Comm, text: str, stream=sys.stdout) -> None:  # type: ignore[no-untyped-def]
    """Print on rank 0 only."""
    if comm.rank == 0:
        print(text, file=stream, flush=True)


def run_train(args: argparse.Namespace, comm: Comm) -> int:
    """The train subcommand: defaults from the data, then mt.train into --out (claimed for this run)."""
    for warning in startup_warnings(comm.ranks_on_node(), blas_threads(), os.cpu_count()):
        say(comm, f"mpitrain: warning: {warning}", sys.stderr)
    if args.data is None:
        args.train_parser.error("--data SPEC is required (or data = \"SPEC\" in --config)")
    data = load(args.data, comm, **flags.data_options(args))
    defaults = flags.resolve(args, comm, data)
    flags.check(args.train_parser, args)
    if args.print_config:
        say(comm, configfile.to_toml(configfile.effective_config(args, args.train_parser)).rstrip())
        return 0
    if defaults:
        say(comm, "mpitrain: defaults: " + "; ".join(defaults), sys.stderr)
    say(comm, f"mpitrain: writing to {args.out}", sys.stderr)
    with comm.together():
        outputs = {f"--out's {name}": os.path.join(args.out, name)
                   for name in ("model.npz", "metrics.jsonl", "summary.json", rundir.RUN_FILE)}
        inputs = {f"--{flag.replace('_', '-')} {spec}": path for flag in ("data", "test_data")
                  for spec in [getattr(args, flag)] if spec for path in spec_files(spec)}
        check_distinct({**outputs, **({"--trace": args.trace} if args.trace else {})}, inputs)
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

    printed = [-LINE_SECONDS]

    def line(record: dict) -> None:  # at most one line per LINE_SECONDS, and the last (metrics.jsonl has all)
        if args.quiet or progress is True:
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

    watched = has_terminal() if args.progress is None else args.progress
    progress = False if args.quiet else (True if watched else PlainProgress(steps * (args.batch_size or data.n_total)))
    validation = None
    if val is not None:
        early = (EarlyStopping(args.monitor or "val_loss", args.patience or 5, args.min_delta or 0.0)
                 if args.early_stopping else None)
        validation = Validation(model, val, comm, args.eval_every or steps_per_epoch(data.n_total, args.batch_size),
                                args.l2, early, metrics=args.metrics or ())
    extras = schema.arrays()
    describe_run = {"data": args.data, "test_data": args.test_data, "label_column": args.label_column,
                    "data_schema": {**schema.describe(), "notes": list(data.notes)},
                    "config": configfile.effective_config(args, args.train_parser),
                    "settings": {**asdict(settings), "lr_given": args.lr, "scale_lr_reference_batch": args.scale_lr},
                    "preparation": {"test_fraction": args.test_fraction, "split_seed": args.split_seed,
                                    "standardize": args.standardize, "impute": args.impute, "dtype": args.dtype,
                                    "val_fraction": args.val_fraction, "val_data": args.val_data,
                                    "weight_column": args.weight_column, "class_weight": args.class_weight}}
    done = train(model, data, comm, args.algorithm, settings, out=args.out, test=test,
                 checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints, resume=args.resume,
                 overwrite=args.overwrite, watchdog_seconds=args.watchdog_seconds, trace=args.trace, progress=progress, on_log=line,
                 on_note=lambda text: say(comm, f"mpitrain: {text}", sys.stderr),
                 validation=validation, metrics=args.metrics or (), model_extras=extras, describe=describe_run)
    if done.stopped:
        say(comm, f"mpitrain: stopped by a signal after step {done.result.steps} of {steps}; checkpoint "
                  f"{done.checkpoint}; continue with the same command and --resume auto "
                  f"(exit status {EXIT_RESUMABLE})", sys.stderr)
        return EXIT_RESUMABLE
    summary = done.summary
    test_part = f", test {model.metric_name} {summary['test_metric']:.4f}" if test is not None else ""
    test_part += "".join(f", test {name} {value:.4f}" for name, value in summary.get("test_metrics", {}).items()
                         if name != model.metric_name)
    if args.algorithm in ("gd", "sgd") and "converged" in summary:
        test_part += (f"; converged (--tol {args.tol:g}) after {summary['steps_run']} steps" if summary["converged"]
                      else f"; not converged (--tol {args.tol:g}) in {summary['steps_run']} steps")
    if summary.get("ended_early"):
        best = summary["validation"]
        test_part += (f"; early stopping after step {done.result.steps}: the best {best['monitor']} "
                      f"{best['best_value']:.6g} was at step {best['best_step']}, and that model was saved")
    say(comm, f"trained {args.model} with {args.algorithm} on {comm.size} rank(s): {data.n_total} samples, "
              f"{done.result.steps - done.resumed_from} steps in {done.result.seconds:.2f}s "
              f"({summary['comm_seconds']:.2f}s communicating); train loss {summary['final_train_loss']:.6g}, "
              f"train {model.metric_name} {summary['final_train_metric']:.4f}{test_part}; "
              f"wrote {os.path.join(args.out, '')}{{model.npz,metrics.jsonl,summary.json}}"
              + (f" and {args.trace}" if args.trace else ""))
    if getattr(done.result, "message", "") and not args.quiet:
        say(comm, f"{args.algorithm}: {done.result.message}", sys.stderr)
    if not args.quiet:
        say(comm, describe(summary["phases"]), sys.stderr)
    return 0


def run_predict(args: argparse.Namespace, comm: Comm) -> int:
    """The predict subcommand."""
    with comm.together():
        check_distinct({"--out": args.out}, {"--model": args.model, **{f"--data {args.data}": path
                                                                       for path in spec_files(args.data)}})
        model, theta = models.load(args.model)
        if comm.rank == 0 and not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
            raise UsageError(f"the directory of --out {args.out!r} does not exist")
    data = load(args.data, comm, n_features=model.n_features, require_labels=False,
                **flags.data_options(args, missing=model.schema is not None and model.schema.fill is not None))
    for note in data.notes:
        say(comm, f"mpitrain: note: {args.data}: {note}", sys.stderr)
    predictions, metric = predict(model, theta, data, comm, labels=not args.proba)
    with comm.together():
        if predictions is not None:
            write_npy(args.out, predictions)
    scored = f"; {model.metric_name} {metric:.4f}" if metric is not None else ""
    say(comm, f"predicted {data.n_total} rows on {comm.size} rank(s){scored}; wrote {args.out}")
    return 0


def run(argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv`` and run the subcommand on this rank; return the exit status."""
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["train"]:
        path = next((w.split("=", 1)[1] if "=" in w else (words[i + 1] if i + 1 < len(words) else "")
                     for i, w in enumerate(words) if w == "--config" or w.startswith("--config=")), None)
        if path is not None:
            try:
                words = ["train", *configfile.read_config(path, parser.get_default("train_parser"),
                                                     words[1:]), *words[1:]]
            except UsageError as exc:
                if launcher_rank() == 0:
                    print(f"mpitrain: error: {exc}", file=sys.stderr)
                return 2
    args = parser.parse_args(words)
    if args.command != "train" and guard_signals() is not None:
        guard_signals().restore()  # only training stops gracefully on a signal; the rest end as usual
    if args.command == "bench" and args.bench == "train":
        return bench_train.run(args)  # launches its own jobs: starts no MPI here
    if args.command == "plot":
        print("wrote " + ", ".join(plot(args.path)))
        return 0
    if args.command == "explain":
        print(explain.run(args))
        return 0
    comm = world()
    if args.command in ("train", "predict"):
        refuse_mismatched_launch(comm.size)  # before reading or writing anything
        limit_blas_threads(comm.ranks_on_node())
    if args.command == "doctor":
        return doctor.run(args, comm)
    if args.command == "train":
        start_up_watchdog(args.watchdog_seconds, comm.rank, lambda: comm.busy)  # until the first step
        try:
            return run_train(args, comm)
        except OptionError as exc:
            raise JobError(flags.flag_words(str(exc))) from None
        finally:
            start_up_watchdog(0, comm.rank, lambda: False)
    if args.command == "predict":
        return run_predict(args, comm)
    if args.command == "bench":
        return bench_allreduce.run(args)
    info = {"mpitrain": __version__, "python": sys.version.split()[0], **comm.info()}
    info = {k: v.replace("\x00", "").strip() if isinstance(v, str) else v for k, v in info.items()}  # Open MPI's NUL
    say(comm, json.dumps({**info, **collectives.auto.describe(comm)}, indent=2))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point: run, turning a JobError into one message from rank 0 and exit status 2.

    Any other exception on any rank is printed once by that rank and aborts the whole job.
    """
    try:
        return run(argv)
    except JobError as exc:
        say(world(), f"mpitrain: error: {exc}", sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - every other failure ends the whole job
        from .comm import report_and_abort

        report_and_abort(exc)
        return 1
