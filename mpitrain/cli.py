"""``python -m mpitrain {train,predict,info}``: every rank runs the same command; rank 0 talks."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from typing import Optional, Sequence

import numpy as np

from . import __version__, collectives, explain, models, optim, rundir
from .bench import allreduce as bench_allreduce
from .bench import train as bench_train
from .algorithms import ALGORITHMS, Settings, evaluate, fit, steps_per_epoch
from .algorithms.base import LOCAL_STATES
from .comm import Comm, world
from .data import BUILTIN, Dataset, as_dtype, load, n_classes, split, standardize
from .errors import JobError, UsageError
from .guard import EXIT_RESUMABLE, Watchdog, blas_threads, guard_signals, limit_blas_threads, startup_warnings
from .inference import predict
from .plot import plot
from .outputs import MetricsLog, check_distinct, spec_files, write_json, write_npy, write_npz
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
                       help="DIR with X.npy/y.npy, FILE.csv, synthetic:regression|classification[,n=..,d=..,noise=..,seed=..], "
                            f"or a data set that scikit-learn ships: {'|'.join(BUILTIN)}")
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
    train.add_argument("--seed", type=int, default=0, help="seed of sampling and of the MLP's initialisation (default 0)")
    train.add_argument("--out", required=True, metavar="DIR", help="output directory (created by rank 0)")
    train.add_argument("--quiet", action="store_true", help="print only the final summary")
    train.add_argument("--trace", metavar="FILE.json",
                       help="write a Chrome-trace timeline (one lane per rank; open in Perfetto or chrome://tracing)")
    train.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="a progress bar on rank 0 (needs tqdm; default: when stderr is a terminal)")
    train.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                       help="precision of the data, parameters and gradients (default float64; float32 halves "
                            "memory traffic and the bytes reduced)")
    wire = train.add_argument_group("communication")
    wire.add_argument("--allreduce", choices=("auto", "native", *collectives.ALGORITHMS), default="auto",
                      help="the reduction algorithm (default auto: the faster of the MPI library's call and our "
                           "own for each buffer size; see docs/collectives.md)")
    wire.add_argument("--compress", choices=("fp16", "bf16"),
                      help="send gradients as 16-bit floats with error feedback (gd and sgd)")
    wire.add_argument("--overlap", action="store_true",
                      help="reduce each layer's gradient while the backward pass goes on (gd and sgd; rank-ordered "
                           "sums, bitwise those of --allreduce ordered)")
    safety = train.add_argument_group("checkpoints and fault handling")
    safety.add_argument("--checkpoint-every", type=non_negative_int, default=0, metavar="N",
                        help="write a checkpoint every N steps into OUT/checkpoints (default 0: only when "
                             "stopped by SIGUSR1/SIGTERM)")
    safety.add_argument("--keep-checkpoints", type=positive_int, default=3, metavar="K",
                        help="keep the newest K checkpoints (default 3)")
    safety.add_argument("--resume", metavar="auto|PATH",
                        help="continue from the newest valid checkpoint in OUT/checkpoints (auto; none: start "
                             "afresh) or from one checkpoint directory")
    safety.add_argument("--overwrite", action="store_true",
                        help="start a new run in an OUT that holds another run's outputs, removing them (model.npz, "
                             "metrics.jsonl, summary.json, run.json, checkpoints)")
    safety.add_argument("--watchdog-seconds", type=non_negative_float, default=900.0, metavar="S",
                        help="end the job (status 4) if one step takes longer than S seconds, after printing "
                             "every rank's stack (default 900; 0 turns it off)")

    pred = sub.add_parser("predict", help="distributed inference; rank 0 writes the predictions in row order")
    pred.add_argument("--model", required=True, metavar="MODEL.npz", help="a model file written by train")
    pred.add_argument("--data", required=True, metavar="SPEC")
    pred.add_argument("--label-column", metavar="NAME|INDEX")
    pred.add_argument("--out", required=True, metavar="FILE.npy")

    sub.add_parser("info", help="versions, MPI library, world size, thread level and processor names")
    add_model_flags(train)
    explain.add_parser(sub, Parser)
    drawing = sub.add_parser("plot", help="PNG charts of a run directory or of a `bench train` JSON (needs matplotlib)")
    drawing.add_argument("path", metavar="RUN_DIR|BENCH.json")
    bench = sub.add_parser("bench", help="benchmarks: `bench allreduce` (run under mpiexec) and `bench train` "
                                         "(throughput; launches its own mpiexec jobs)")
    benches = bench.add_subparsers(dest="bench", required=True, parser_class=Parser)
    bench_allreduce.add_parser(benches)
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
    if args.compress and args.algorithm in ("local-sgd", "one-shot"):
        parser.error(f"--compress applies to gradients (gd, sgd); {args.algorithm} averages parameters exactly")
    if args.overlap and args.algorithm in ("local-sgd", "one-shot"):
        parser.error(f"--overlap applies to gradients (gd, sgd); {args.algorithm} averages parameters "
                     "after local steps")
    if args.overwrite and args.resume:
        parser.error("--overwrite starts a new run and --resume continues one; give one of them")
    if args.overlap and (args.compress or args.allreduce not in ("auto", "ordered")):
        parser.error("--overlap reduces with the exact rank-ordered algorithm; drop --compress and --allreduce "
                     f"{args.allreduce}")


# -- models, optimizers and data preparation (issue 3) --------------------------------------------


def int_list(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated integers >= 1, e.g. 256,256."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers such as 64,64, not {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers >= 1 such as 64,64, not {text!r}")
    return values


def float_pair(text: str) -> tuple[float, float]:
    """argparse type: two comma-separated numbers in [0, 1), e.g. 0.9,0.999."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 2 or not all(0 <= v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"must be two numbers in [0, 1) such as 0.9,0.999, not {text!r}")
    return values  # type: ignore[return-value]


def fraction(text: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), not {text}")
    return value


def add_model_flags(train: Parser) -> None:
    """Flags of the MLP, the optimizers, the schedules and data preparation."""
    mlp = train.add_argument_group("mlp")
    mlp.add_argument("--hidden", type=int_list, metavar="H1,H2,...", help="hidden layer sizes (default 64)")
    mlp.add_argument("--activation", choices=("relu", "tanh"), help="hidden activation (default relu)")
    mlp.add_argument("--loss", choices=("cross-entropy", "squared-error"),
                     help="cross-entropy over the classes (default) or squared error for regression")
    opt = train.add_argument_group("optimizer")
    opt.add_argument("--optimizer", choices=optim.OPTIMIZERS, default="sgd", help="update rule (default sgd)")
    opt.add_argument("--momentum", type=non_negative_float, help="momentum coefficient (momentum, nesterov; default 0.9)")
    opt.add_argument("--betas", type=float_pair, metavar="B1,B2",
                     help="Adam's moment decay rates (adam, adamw; default 0.9,0.999)")
    opt.add_argument("--eps", type=positive_float, help="Adam's denominator term (default 1e-8)")
    opt.add_argument("--weight-decay", type=non_negative_float, help="decoupled weight decay of the weights (adamw)")
    opt.add_argument("--clip-norm", type=positive_float, metavar="C",
                     help="clip the reduced gradient (with the L2 term) to global L2 norm C")
    opt.add_argument("--schedule", choices=optim.SCHEDULES, default="constant",
                     help="learning rate after warmup: constant, step (--decay-every, --decay-factor) or cosine to 0")
    opt.add_argument("--warmup-steps", type=int, default=0, metavar="W", help="linear warmup from lr/W to lr (default 0)")
    opt.add_argument("--decay-every", type=positive_int, metavar="N", help="step schedule: decay period in steps")
    opt.add_argument("--decay-factor", type=positive_float, metavar="F", help="step schedule: factor (default 0.1)")
    opt.add_argument("--scale-lr", type=positive_int, metavar="B0",
                     help="linear scaling rule: --lr is tuned for global batch B0; use lr * B / B0 "
                          "(B: --batch-size, or all rows for gd)")
    opt.add_argument("--local-state", choices=LOCAL_STATES,
                     help="local-sgd: keep optimizer state per rank (default), average it, or reset it at each sync")
    prep = train.add_argument_group("data preparation")
    prep.add_argument("--test-fraction", type=fraction, metavar="F",
                      help="hold out a stratified fraction F of --data as test data (instead of --test-data)")
    prep.add_argument("--split-seed", type=int, default=0, help="seed of the --test-fraction split (default 0)")
    prep.add_argument("--standardize", action="store_true",
                      help="scale features by the training rows' global mean and standard deviation")


def check_model_flags(parser: Parser, args: argparse.Namespace) -> None:
    """Reject model, optimizer and preparation flags that do not apply to the chosen ones."""
    only = [
        (("hidden", "activation", "loss"), args.model == "mlp", "--model mlp"),
        (("momentum",), args.optimizer in ("momentum", "nesterov"), "--optimizer momentum or nesterov"),
        (("betas", "eps"), args.optimizer in ("adam", "adamw"), "--optimizer adam or adamw"),
        (("weight_decay",), args.optimizer == "adamw", "--optimizer adamw (use --l2 with the others)"),
        (("decay_every", "decay_factor"), args.schedule == "step", "--schedule step"),
        (("local_state",), args.algorithm == "local-sgd", "--algorithm local-sgd"),
    ]
    for names, applies, where in only:
        for name in names:
            if getattr(args, name) is not None and not applies:
                parser.error(f"--{name.replace('_', '-')} only applies to {where}")
    if args.schedule == "step" and args.decay_every is None:
        parser.error("--schedule step needs --decay-every N (steps between decays)")
    if args.momentum is not None and args.momentum >= 1:
        parser.error(f"--momentum must be below 1, not {args.momentum}")
    if args.warmup_steps < 0:
        parser.error(f"--warmup-steps must be >= 0, not {args.warmup_steps}")
    if args.split_seed < 0 or (args.model == "mlp" and args.seed < 0):
        parser.error("--split-seed and the MLP's --seed must be >= 0")
    if args.test_fraction is not None and args.test_data:
        parser.error("--test-fraction and --test-data both name test data; give one of them")


def prepare(args: argparse.Namespace, comm: Comm, data: Dataset, test: Optional[Dataset]) -> tuple:
    """Collective: split off --test-fraction, --standardize, convert to --dtype; return (train, test, scaling)."""
    if args.test_fraction is not None:
        classifier = args.model in ("logistic", "softmax") or (args.model == "mlp" and args.loss != "squared-error")
        data, test = split(data, comm, args.test_fraction, args.split_seed, stratify=classifier)
    scaling = standardize(data, comm, *([test] if test is not None else [])) if args.standardize else None
    if args.dtype != "float64":
        data, test = as_dtype(data, args.dtype), (None if test is None else as_dtype(test, args.dtype))
    return data, test, scaling


def model_options(args: argparse.Namespace, comm: Comm, data: Dataset) -> dict:
    """Collective: the keyword options of the chosen model (the class count comes from the labels)."""
    options = {k: getattr(args, k) for k in ("hidden", "activation", "loss") if getattr(args, k) is not None}
    if args.model == "softmax" or (args.model == "mlp" and args.loss != "squared-error"):
        options["n_classes"] = n_classes(data, comm)
    return options


def optimizer_settings(args: argparse.Namespace, steps: int, batch: int) -> dict:
    """The Settings fields of the optimizer flags, with --scale-lr applied; JobError if they conflict."""
    if args.warmup_steps > steps:
        raise JobError(f"--warmup-steps {args.warmup_steps} exceeds the {steps} training steps; use fewer")
    given = {"momentum": args.momentum, "betas": args.betas, "eps": args.eps, "weight_decay": args.weight_decay,
             "decay_every": args.decay_every, "decay_factor": args.decay_factor, "local_state": args.local_state}
    lr = optim.scale_lr(args.lr, batch, args.scale_lr) if args.scale_lr else args.lr
    return {"lr": lr, "optimizer": args.optimizer, "clip_norm": args.clip_norm, "schedule": args.schedule,
            "warmup_steps": args.warmup_steps, **{k: v for k, v in given.items() if v is not None}}


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
    """The train subcommand: rank 0 claims --out for this run (see mpitrain.rundir) while it runs.

    The watchdog guards start-up (claiming --out, loading, preparing, resuming) as it guards a step.
    """
    startup = Watchdog(args.watchdog_seconds, comm.rank, lambda: comm.busy) if args.watchdog_seconds > 0 else None
    if startup is not None:
        startup.arm("start-up (claiming --out, loading and preparing the data, resuming)")
    with comm.together():
        outputs = {f"--out's {name}": os.path.join(args.out, name) for name in ("model.npz", "metrics.jsonl",
                                                                              "summary.json", rundir.RUN_FILE)}
        inputs = {f"--{flag.replace('_', '-')} {spec}": path for flag in ("data", "test_data")
                  for spec in [getattr(args, flag)] if spec for path in spec_files(spec)}
        check_distinct({**outputs, **({"--trace": args.trace} if args.trace else {})}, inputs)
        run_dir = rundir.claim(args.out, args.resume, args.overwrite) if comm.rank == 0 else None
    if run_dir is not None and guard_signals() is not None:
        guard_signals().cleanups.append(run_dir.release)  # a stop during start-up leaves no lock behind
    try:
        for note in run_dir.notes if run_dir is not None else []:
            say(comm, f"mpitrain: {note}", sys.stderr)
        return train_in(args, comm, run_dir.run_id if run_dir is not None else None, startup)
    finally:
        if startup is not None:
            startup.stop()
        if run_dir is not None:
            run_dir.release()


def train_in(args: argparse.Namespace, comm: Comm, run_id: Optional[str], startup: Optional[Watchdog]) -> int:
    """Train into the claimed --out (``run_id`` on rank 0, None elsewhere); ``startup`` stops when training starts."""
    t0 = time.perf_counter()
    for warning in startup_warnings(comm.size, comm.ranks_on_node(), blas_threads(), os.cpu_count()):
        say(comm, f"mpitrain: warning: {warning}", sys.stderr)
    data = load(args.data, comm, label_column=args.label_column)
    fingerprint = rundir.data_fingerprint(data.X, data.y, data.start, comm)
    test = None
    if args.test_data:
        test = load(args.test_data, comm, label_column=args.label_column, n_features=data.n_features)
    data, test, scaling = prepare(args, comm, data, test)
    with comm.together():
        model = models.create(args.model, data.n_features, **model_options(args, comm, data))
    if test is not None and test.y is not None:
        bad = model.check_labels(test.y, test.start)
        comm.raise_if_any(f"test data: {bad}" if bad else "")
    per_epoch = steps_per_epoch(data.n_total, args.batch_size)
    steps = args.steps if args.steps is not None else (args.epochs or 10) * per_epoch
    settings = Settings(steps=steps, l2=args.l2, batch_size=args.batch_size, sync_every=args.sync_every,
                        seed=args.seed, allreduce=args.allreduce, compress=args.compress, overlap=args.overlap,
                        **optimizer_settings(args, steps, args.batch_size or data.n_total))
    if args.scale_lr:
        say(comm, f"linear scaling rule: lr {args.lr:g} x {args.batch_size or data.n_total} / {args.scale_lr} "
                  f"= {settings.lr:g}")
    metrics = MetricsLog(os.path.join(args.out, "metrics.jsonl")) if comm.rank == 0 else None
    bar = progress_bar(args, comm, steps, settings.batch_size or data.n_total)
    meta = {"model": args.model, "n_params": model.n_params, "algorithm": args.algorithm,
            "n_features": data.n_features, "n_samples": data.n_total, "steps_per_epoch": per_epoch,
            "data": args.data, "settings": asdict(settings), "run_id": run_id, "model_options": model.options(),
            "shapes": model.layout.shapes, "data_fingerprint": fingerprint,
            "preparation": {"test_fraction": args.test_fraction, "split_seed": args.split_seed,
                            "standardize": args.standardize, "dtype": args.dtype}}
    supervisor = Supervisor(comm, os.path.join(args.out, "checkpoints"), args.checkpoint_every,
                            args.keep_checkpoints, meta, data.n_local / data.n_total, metrics,
                            args.watchdog_seconds, bar)

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
            state, notes = supervisor.resume(args.resume, model.n_params)
            for note in notes:
                say(comm, f"mpitrain: {note}", sys.stderr)
        timeline = Timeline(record=bool(args.trace))
        if startup is not None:
            startup.stop()  # the supervisor's watchdog guards each step from here
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
        "settings": {**asdict(settings), "lr_given": args.lr, "scale_lr_reference_batch": args.scale_lr},
        "model_options": model.options(),
        "preparation": {"test_fraction": args.test_fraction, "split_seed": args.split_seed,
                        "standardize": args.standardize},
        "data": args.data,
        "metric_name": model.metric_name,
        "final_train_loss": train_loss,
        "final_train_metric": train_metric,
        "train_seconds": result.seconds,
        "comm_seconds": float(comm.Allreduce(np.array([result.comm_seconds]), "max")[0]),
        "samples_per_second": result.samples / result.seconds if result.seconds > 0 else None,
        "blas_threads": blas_threads(),
        "phases": phases,
    }
    if test is not None:
        summary["test_data"] = args.test_data
        summary["test_loss"], summary["test_metric"] = evaluate(model, result.theta, test, comm, args.l2)
    summary["wall_seconds"] = time.perf_counter() - t0
    with comm.together():
        if metrics is not None:
            write_npz(os.path.join(args.out, "model.npz"), models.save_arrays(model, result.theta, scaling))
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
        check_distinct({"--out": args.out}, {"--model": args.model, **{f"--data {args.data}": path
                                                                       for path in spec_files(args.data)}})
        model, theta = models.load(args.model)
        scaling = models.feature_scaling(args.model)
        if comm.rank == 0 and not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
            raise UsageError(f"the directory of --out {args.out!r} does not exist")
    data = load(args.data, comm, label_column=args.label_column, n_features=model.n_features,
                require_labels=False)
    if scaling is not None:  # the model was trained on standardised features
        data.X -= scaling[0]
        data.X /= scaling[1]
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
    guard = guard_signals()
    if guard is not None:
        guard.rank = comm.rank
        if args.command != "train":  # only training stops gracefully; the rest end as usual
            guard.restore()
    if args.command in ("train", "predict"):
        limit_blas_threads(comm.ranks_on_node())
    if args.command == "train":
        check_train_flags(args.train_parser, args)
        check_model_flags(args.train_parser, args)
        return run_train(args, comm)
    if args.command == "predict":
        return run_predict(args, comm)
    if args.command == "bench":
        return bench_allreduce.run(args) if args.bench == "allreduce" else bench_train.run(args)
    if args.command == "explain":
        say(comm, explain.run(args))
        return 0
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
