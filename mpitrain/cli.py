"""``python -m mpitrain {train,predict,info}``: every rank runs the same command; rank 0 talks."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Optional, Sequence

import numpy as np

from . import __version__, models
from .bench import train as bench_train
from .algorithms import ALGORITHMS, Settings, evaluate, fit, steps_per_epoch
from .comm import Comm, world
from .data import load
from .errors import JobError, UsageError
from .guard import EXIT_RESUMABLE, blas_threads, startup_warnings
from .inference import predict
from .plot import plot
from .outputs import MetricsLog, write_json, write_npy, write_npz
from .profile import describe, gather_trace, phase_summary
from .timeline import Timeline
from .supervisor import Supervisor


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help and errors are printed by rank 0 only (all ranks exit alike)."""

    def _print_message(self, message: str, file=None) -> None:  # type: ignore[no-untyped-def]
        if world().rank == 0:
            super()._print_message(message, file)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, not {value}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    value = float(text)
    if not (value >= 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    value = float(text)
    if not (value > 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, not {text}")
    return value


def build_parser() -> Parser:
    """The command-line grammar."""
    parser = Parser(prog="python -m mpitrain", description="Data-parallel training of NumPy models over MPI.")
    parser.add_argument("--version", action="version", version=f"mpitrain {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    train = sub.add_parser("train", help="train a model; rank 0 writes OUT/model.npz, metrics.jsonl, summary.json")
    train.add_argument("--model", required=True, choices=sorted(models.MODELS))
    train.add_argument("--algorithm", required=True, choices=ALGORITHMS,
                       help="gd: full batch; sgd: mini-batch; local-sgd: average every --sync-every steps; "
                            "one-shot: average once at the end")
    train.add_argument("--data", required=True, metavar="SPEC",
                       help="DIR with X.npy/y.npy, FILE.csv, or synthetic:regression|classification[,n=..,d=..,noise=..,seed=..]")
    train.add_argument("--test-data", metavar="SPEC", help="evaluated once after training")
    train.add_argument("--label-column", metavar="NAME|INDEX", help="CSV label column (default: the last)")
    length = train.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=positive_int, help="passes over the data (default 10)")
    length.add_argument("--steps", type=positive_int, help="optimisation steps (local steps for local-sgd)")
    train.add_argument("--lr", required=True, type=positive_float, help="learning rate")
    train.add_argument("--batch-size", type=positive_int, metavar="B",
                       help="global mini-batch, split over ranks in proportion to their rows (sgd, local-sgd, one-shot)")
    train.add_argument("--sync-every", type=positive_int, metavar="H", help="local steps between averages (local-sgd)")
    train.add_argument("--l2", type=non_negative_float, default=0.0, help="weight of (l2/2)||w||^2; bias unpenalised")
    train.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    train.add_argument("--out", required=True, metavar="DIR", help="output directory (created by rank 0)")
    train.add_argument("--quiet", action="store_true", help="print only the final summary")
    train.add_argument("--trace", metavar="FILE.json",
                       help="write a Chrome-trace timeline (one lane per rank; open in Perfetto or chrome://tracing)")
    train.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="a progress bar on rank 0 (needs tqdm; default: when stderr is a terminal)")
    safety = train.add_argument_group("checkpoints and fault handling")
    safety.add_argument("--checkpoint-every", type=non_negative_int, default=0, metavar="N",
                        help="write a checkpoint every N steps into OUT/checkpoints (default 0: only when "
                             "stopped by SIGUSR1/SIGTERM)")
    safety.add_argument("--keep-checkpoints", type=positive_int, default=3, metavar="K",
                        help="keep the newest K checkpoints (default 3)")
    safety.add_argument("--resume", metavar="auto|PATH",
                        help="continue from the newest valid checkpoint in OUT/checkpoints (auto; none: start "
                             "afresh) or from one checkpoint directory")
    safety.add_argument("--watchdog-seconds", type=non_negative_float, default=900.0, metavar="S",
                        help="end the job (status 4) if one step takes longer than S seconds, after printing "
                             "every rank's stack (default 900; 0 turns it off)")

    pred = sub.add_parser("predict", help="distributed inference; rank 0 writes the predictions in row order")
    pred.add_argument("--model", required=True, metavar="MODEL.npz", help="a model file written by train")
    pred.add_argument("--data", required=True, metavar="SPEC")
    pred.add_argument("--label-column", metavar="NAME|INDEX")
    pred.add_argument("--out", required=True, metavar="FILE.npy")

    sub.add_parser("info", help="versions, MPI library, world size, thread level and processor names")
    drawing = sub.add_parser("plot", help="PNG charts of a run directory or of a `bench train` JSON (needs matplotlib)")
    drawing.add_argument("path", metavar="RUN_DIR|BENCH.json")
    bench = sub.add_parser("bench", help="benchmarks: `bench train` (throughput; launches its own mpiexec jobs)")
    benches = bench.add_subparsers(dest="bench", required=True, parser_class=Parser)
    bench_train.add_parser(benches)
    parser.set_defaults(train_parser=train)
    return parser


def check_train_flags(parser: Parser, args: argparse.Namespace) -> None:
    """Reject flag combinations that make no sense for the chosen algorithm."""
    minibatch = args.algorithm != "gd"
    if minibatch and args.batch_size is None:
        parser.error(f"--algorithm {args.algorithm} needs --batch-size B (the global mini-batch)")
    if not minibatch and args.batch_size is not None:
        parser.error("--batch-size has no effect with --algorithm gd (full batch); drop it or use sgd")
    if args.algorithm == "local-sgd" and args.sync_every is None:
        parser.error("--algorithm local-sgd needs --sync-every H (local steps between averages)")
    if args.algorithm != "local-sgd" and args.sync_every is not None:
        parser.error(f"--sync-every only applies to local-sgd, not {args.algorithm}")


def say(comm: Comm, text: str, stream=sys.stdout) -> None:  # type: ignore[no-untyped-def]
    """Print on rank 0 only."""
    if comm.rank == 0:
        print(text, file=stream, flush=True)


def progress_bar(args: argparse.Namespace, comm: Comm, steps: int, batch: int):  # type: ignore[no-untyped-def]
    """A tqdm bar counting samples on rank 0 (None elsewhere, when off, or without tqdm)."""
    wanted = sys.stderr.isatty() if args.progress is None else args.progress
    if comm.rank != 0 or not wanted or args.quiet:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        if args.progress:
            print("mpitrain: --progress needs tqdm (pip install tqdm); printing epoch lines instead", file=sys.stderr)
        return None
    return tqdm(total=steps * batch, unit="samples", unit_scale=True, dynamic_ncols=True, file=sys.stderr)


def run_train(args: argparse.Namespace, comm: Comm) -> int:
    """The train subcommand."""
    t0 = time.perf_counter()
    for warning in startup_warnings(comm.size, comm.ranks_on_node(), blas_threads(), os.cpu_count()):
        say(comm, f"mpitrain: warning: {warning}", sys.stderr)
    with comm.together():
        if comm.rank == 0:
            os.makedirs(args.out, exist_ok=True)
            if not os.access(args.out, os.W_OK):
                raise UsageError(f"output directory {args.out!r} is not writable")
    data = load(args.data, comm, label_column=args.label_column)
    test = None
    if args.test_data:
        test = load(args.test_data, comm, label_column=args.label_column, n_features=data.n_features)
    model = models.create(args.model, data.n_features)
    per_epoch = steps_per_epoch(data.n_total, args.batch_size)
    steps = args.steps if args.steps is not None else (args.epochs or 10) * per_epoch
    settings = Settings(steps=steps, lr=args.lr, l2=args.l2, batch_size=args.batch_size,
                        sync_every=args.sync_every, seed=args.seed)
    metrics = MetricsLog(os.path.join(args.out, "metrics.jsonl")) if comm.rank == 0 else None
    bar = progress_bar(args, comm, steps, settings.batch_size or data.n_total)
    meta = {"model": args.model, "algorithm": args.algorithm, "n_features": data.n_features,
            "n_samples": data.n_total, "steps_per_epoch": per_epoch, "data": args.data,
            "settings": {"lr": args.lr, "l2": args.l2, "batch_size": args.batch_size,
                         "sync_every": args.sync_every, "seed": args.seed, "steps": steps}}
    supervisor = Supervisor(comm, os.path.join(args.out, "checkpoints"), args.checkpoint_every,
                            args.keep_checkpoints, meta, metrics, args.watchdog_seconds, bar)

    def log(record: dict) -> None:
        if metrics is not None:
            metrics.append(record)
            if bar is not None:
                bar.set_postfix(loss=f"{record['loss']:.4g}", **{model.metric_name: f"{record['metric']:.4f}"})
            elif not args.quiet:
                print(f"step {record['step']:>7}  epoch {record['epoch']:8.2f}  loss {record['loss']:.6g}  "
                      f"{model.metric_name} {record['metric']:.4f}  {record['seconds']:.2f}s",
                      file=sys.stderr, flush=True)

    try:
        state = None
        if args.resume:
            state, notes = supervisor.resume(args.resume, model.n_params, data.n_total)
            for note in notes:
                say(comm, f"mpitrain: {note}", sys.stderr)
        timeline = Timeline(record=bool(args.trace))
        result = fit(model, data, comm, args.algorithm, settings, log=log, state=state, hooks=supervisor,
                     timeline=timeline)
    finally:
        supervisor.close()
        if bar is not None:
            bar.close()
    phases = phase_summary(comm, result.timeline)
    trace = gather_trace(comm, result.timeline, {"command": "train", "algorithm": args.algorithm,
                                                 "world_size": comm.size}) if args.trace else None
    if result.stopped:
        say(comm, f"mpitrain: stopped by a signal after step {result.steps} of {steps}; checkpoint "
                  f"{supervisor.saved_path}; continue with the same command and --resume auto "
                  f"(exit status {EXIT_RESUMABLE})", sys.stderr)
        return EXIT_RESUMABLE
    train_loss, train_metric = evaluate(model, result.theta, data, comm, args.l2)
    summary = {
        "mpitrain_version": __version__,
        "model": args.model,
        "algorithm": args.algorithm,
        "world_size": comm.size,
        "n_samples": data.n_total,
        "n_features": data.n_features,
        "steps": steps,
        "epochs": steps / per_epoch,
        "settings": {"lr": args.lr, "l2": args.l2, "batch_size": args.batch_size,
                     "sync_every": args.sync_every, "seed": args.seed},
        "data": args.data,
        "metric_name": model.metric_name,
        "final_train_loss": train_loss,
        "final_train_metric": train_metric,
        "train_seconds": result.seconds,
        "comm_seconds": float(comm.allreduce(np.array([result.comm_seconds]), "max")[0]),
        "samples_per_second": result.samples / result.seconds if result.seconds > 0 else None,
        "phases": phases,
    }
    if test is not None:
        summary["test_data"] = args.test_data
        summary["test_loss"], summary["test_metric"] = evaluate(model, result.theta, test, comm, args.l2)
    summary["wall_seconds"] = time.perf_counter() - t0
    with comm.together():
        if metrics is not None:
            write_npz(os.path.join(args.out, "model.npz"), models.save_arrays(model, result.theta))
            metrics.close()
            write_json(os.path.join(args.out, "summary.json"), summary)
            if trace is not None:
                write_json(args.trace, trace)
    test_part = f", test {model.metric_name} {summary['test_metric']:.4f}" if test is not None else ""
    ran = result.steps - (state.step if state is not None else 0)
    say(comm, f"trained {args.model} with {args.algorithm} on {comm.size} rank(s): {data.n_total} samples, "
              f"{ran} steps in {result.seconds:.2f}s ({summary['comm_seconds']:.2f}s communicating); "
              f"train loss {train_loss:.6g}, train {model.metric_name} {train_metric:.4f}{test_part}; "
              f"wrote {os.path.join(args.out, '')}{{model.npz,metrics.jsonl,summary.json}}"
              + (f" and {args.trace}" if args.trace else ""))
    if not args.quiet:
        say(comm, describe(phases), sys.stderr)
    return 0


def run_predict(args: argparse.Namespace, comm: Comm) -> int:
    """The predict subcommand."""
    with comm.together():
        model, theta = models.load(args.model)
        if comm.rank == 0 and not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
            raise UsageError(f"the directory of --out {args.out!r} does not exist")
    data = load(args.data, comm, label_column=args.label_column, n_features=model.n_features,
                require_labels=False)
    predictions, metric = predict(model, theta, data, comm)
    with comm.together():
        if predictions is not None:
            write_npy(args.out, predictions)
    scored = f"; {model.metric_name} {metric:.4f}" if metric is not None else ""
    say(comm, f"predicted {data.n_total} rows on {comm.size} rank(s){scored}; wrote {args.out}")
    return 0


def run_info(comm: Comm) -> int:
    """The info subcommand."""
    info = {"mpitrain": __version__, "python": sys.version.split()[0], **comm.info()}
    say(comm, json.dumps(info, indent=2))
    return 0


def run(argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv`` and run the subcommand on this rank; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    comm = world()
    if args.command == "train":
        check_train_flags(args.train_parser, args)
        return run_train(args, comm)
    if args.command == "predict":
        return run_predict(args, comm)
    if args.command == "bench":
        return bench_train.run(args)
    if args.command == "plot":
        say(comm, "wrote " + ", ".join(plot(args.path)))
        return 0
    return run_info(comm)


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
