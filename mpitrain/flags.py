"""The flags of ``train`` and how they map to library options: one table for the training flags.

``add_train_flags`` declares them; ``check`` rejects combinations that cannot apply (in flag
words); ``settings`` turns them into the library's ``Settings``; ``flag_words`` rewrites a
library error's option names (``batch_size``) as the flags a user typed (``--batch-size``).
"""
from __future__ import annotations

import argparse
import os
import re
import time
from dataclasses import fields
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from . import collectives, models, optim
from .algorithms import ALGORITHMS, LOCAL_STATES, Settings
from .algorithms.config import DRIFT_ACTIONS, GRAPHS, LOOPS, LocalSGD, solver_steps
from .data import BUILTIN, IMPUTE, Dataset, Schema, as_dtype, encode_labels, find_classes, impute, split, standardize
from .data.labels import describe_classes, is_text, require_numbers
from .argtypes import fraction, float_pair, int_list, non_negative_float, non_negative_int, positive_float, positive_int
from .errors import JobError
from .selectflags import add_selection_flags, check_selection

if TYPE_CHECKING:
    from .comm import Comm


GD_ROWS = 50_000  # gd is the default for convex models up to this many rows
GD_STEPS = 200  # gd's default length
SOLVER_NAMES = ("lbfgs", "newton-cg", "normal")
FIRST_ORDER_FLAGS = ("lr", "optimizer", "momentum", "betas", "eps", "weight_decay", "clip_norm", "schedule",
                     "warmup_steps", "decay_every", "decay_factor", "scale_lr")  # gradient steps' flags
FULL_BATCH = ("gd", *SOLVER_NAMES)
DEFAULT_EPOCHS = 10
DEFAULT_BATCH = 64
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adam": 0.001, "adamw": 0.001}
MAX_CLASSES = 1000  # integer labels with at most this many classes default to a classifier


def add_train_flags(train: Any) -> None:
    """The flags of ``train``: data, length, algorithm, outputs, communication, fault handling."""
    train.add_argument("--config", metavar="FILE.toml",
                       help="read flags from a TOML file (keys as the flags: batch-size = 64); flags given here win")
    train.add_argument("--print-config", action="store_true",
                       help="print the effective configuration as TOML (ready for --config) and exit")
    train.add_argument("--model", choices=sorted(models.MODELS),
                       help="the model (default: from the labels: logistic for 2 classes, softmax for more, linear "
                            "for labels that are not integers; mlp when --hidden is given)")
    train.add_argument("--algorithm", choices=ALGORITHMS,
                       help="gd: full batch; sgd: mini-batch; local-sgd: average every --sync-every steps; "
                            "one-shot: average once at the end; post-local-sgd, slowmo, hierarchical-sgd, gossip, "
                            "zero-1: see 'More ways to aggregate' in the README (default: gd for linear, logistic and "
                            f"softmax on up to {GD_ROWS:,} rows, else sgd); lbfgs, newton-cg: full-batch solvers that "
                            "stop at --tol (no --lr; --steps is their most iterations, default 100); normal: the exact "
                            "ridge solution of --model linear in one pass")
    train.add_argument("--history", type=positive_int, metavar="M",
                       help="lbfgs: curvature pairs kept (default 10)")
    train.add_argument("--tol", type=non_negative_float,
                       help="lbfgs, newton-cg: stop when the largest entry of the objective's gradient is at most "
                            "this, as scikit-learn's LogisticRegression (default 1e-4); gd, sgd: stop when the loss "
                            "of an epoch (gd: a step) has not fallen below the best by more than this for "
                            "--n-iter-no-change epochs, as scikit-learn's SGDClassifier (default: off)")
    train.add_argument("--n-iter-no-change", type=positive_int, metavar="N",
                       help="gd, sgd with --tol: epochs without improvement before stopping (default 5)")
    train.add_argument("--data", metavar="SPEC",
                       help="DIR with X.npy/y.npy or part files, FILE.csv (.tsv, .csv.gz), FILE.parquet, FILE.svm "
                            "(LIBSVM), FILE.npz[:X,y], FILE.h5[:X,y], synthetic:regression|classification[,n=..,d=..,noise=..,seed=..], "
                            f"or a data set that scikit-learn ships: {'|'.join(BUILTIN)}")
    train.add_argument("--test-data", metavar="SPEC", help="evaluated once after training")
    train.add_argument("--label-column", metavar="NAME|INDEX", help="CSV label column (default: the last)")
    length = train.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=positive_int,
                        help=f"passes over the data (default {DEFAULT_EPOCHS}; gd: {GD_STEPS} steps)")
    length.add_argument("--steps", type=positive_int, help="optimisation steps (local steps for local-sgd)")
    train.add_argument("--lr", type=positive_float,
                       help="learning rate, the peak step size (default by --optimizer: "
                            + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LR.items()) + ")")
    train.add_argument("--batch-size", type=positive_int, metavar="B",
                       help="global mini-batch in samples, split over ranks in proportion to their rows (sgd, "
                            f"local-sgd, one-shot; default {DEFAULT_BATCH}, or all the rows when fewer)")
    train.add_argument("--sync-every", type=positive_int, metavar="H",
                       help="local steps between averages (local-sgd, post-local-sgd, slowmo)")
    more = train.add_argument_group("more ways to aggregate")
    more.add_argument("--accumulate", type=positive_int, metavar="K",
                      help="sgd: compute each batch as K micro-batches summed before the one reduction (less memory)")
    more.add_argument("--sampling", choices=("local", "global"),
                      help="sgd: global draws each batch from one order of all rows (the same at any rank count)")
    more.add_argument("--deterministic", action="store_true",
                      help="gd; sgd with --sampling global: exact row-by-row sums, bitwise at any rank count (slower)")
    more.add_argument("--sync-every-global", type=positive_int, metavar="H2",
                      help="hierarchical-sgd: steps between averages over all ranks (--sync-every: in a node)")
    more.add_argument("--graph", choices=GRAPHS, help="gossip: whom each rank averages with every step (default ring)")
    more.add_argument("--consensus-every", type=positive_int, metavar="N", help="gossip: steps between logs (10)")
    more.add_argument("--switch-step", type=non_negative_int, metavar="K",
                      help="post-local-sgd: synchronous sgd steps before switching to local sgd")
    more.add_argument("--slow-momentum", type=non_negative_float, metavar="BETA",
                      help="slowmo: outer momentum applied at each average (default 0.5; below 1)")
    more.add_argument("--slow-lr", type=positive_float, metavar="ALPHA", help="slowmo: outer step size (default 1)")
    more.add_argument("--max-drift", type=non_negative_float, metavar="D",
                      help="averaging algorithms: act when the replicas' spread (drift_rms in the metrics) exceeds D")
    more.add_argument("--drift-action", choices=DRIFT_ACTIONS,
                      help="what --max-drift does: warn (default) or stop the run with an error")
    train.add_argument("--l2", type=non_negative_float, default=0.0,
                       help="weight of the penalty (l2/2)||w||^2 in the objective, for every optimizer (default 0; "
                            "biases unpenalised); adamw's --weight-decay instead shrinks the weights outside the "
                            "gradient")
    train.add_argument("--seed", type=non_negative_int, default=0,
                       help="seed of sampling and of the MLP's initialisation (default 0)")
    train.add_argument("--out", metavar="DIR",
                       help="output directory, created by rank 0 (default runs/MODEL-YYYYmmdd-HHMMSS, printed at the start)")
    train.add_argument("--quiet", action="store_true", help="print only the final summary")
    train.add_argument("--trace", metavar="FILE.json",
                       help="write a Chrome-trace timeline (one lane per rank; open in Perfetto or chrome://tracing)")
    train.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="a progress bar on rank 0 (needs tqdm; default: when the job has a terminal, as under an "
                            "interactive mpiexec; otherwise a plain progress line every 30 s)")
    train.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                       help="precision of the data, parameters and gradients (default float64; float32 halves "
                            "memory traffic and the bytes reduced)")
    wire = train.add_argument_group("communication")
    wire.add_argument("--allreduce", choices=("auto", *collectives.ALGORITHMS), default="auto",
                      help="the reduction algorithm (default auto: the faster of the MPI library's call (native) "
                           "and our own for each buffer size; see docs/collectives.md)")
    wire.add_argument("--compress", choices=("fp16", "bf16"),
                      help="send gradients as 16-bit floats with error feedback (gd and sgd; default: off)")
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
    add_model_flags(train)
    add_selection_flags(train)
    add_data_flags(train, "train")


def add_model_flags(train: Any) -> None:
    """Flags of the MLP, the optimizers, the schedules and data preparation."""
    mlp = train.add_argument_group("mlp")
    mlp.add_argument("--hidden", type=int_list, metavar="H1,H2,...",
                     help="hidden layer sizes in units (default 64; implies --model mlp)")
    mlp.add_argument("--activation", choices=("relu", "tanh"), help="hidden activation (default relu)")
    mlp.add_argument("--loss", choices=("cross-entropy", "squared-error"),
                     help="cross-entropy over the classes (default) or squared error for regression")
    opt = train.add_argument_group("optimizer")
    opt.add_argument("--optimizer", choices=optim.OPTIMIZERS, default="sgd", help="update rule (default sgd)")
    opt.add_argument("--momentum", type=non_negative_float, help="momentum coefficient (momentum, nesterov; default 0.9)")
    opt.add_argument("--betas", type=float_pair, metavar="B1,B2",
                     help="Adam's moment decay rates (adam, adamw; default 0.9,0.999)")
    opt.add_argument("--eps", type=positive_float, help="Adam's denominator term (default 1e-8)")
    opt.add_argument("--weight-decay", type=non_negative_float,
                     help="adamw's decoupled weight decay: the weights shrink by lr x this each step, outside the "
                          "gradient and Adam's scaling (default 0; --l2 instead adds to the objective)")
    opt.add_argument("--clip-norm", type=positive_float, metavar="C",
                     help="clip the reduced gradient (with the L2 term) to global L2 norm C (default: no clipping)")
    opt.add_argument("--schedule", choices=optim.SCHEDULES, default="constant",
                     help="learning rate after warmup: constant, step (--decay-every, --decay-factor) or cosine to 0")
    opt.add_argument("--warmup-steps", type=int, default=0, metavar="W", help="linear warmup from lr/W to lr (default 0)")
    opt.add_argument("--decay-every", type=positive_int, metavar="N",
                     help="step schedule: decay period in steps (no default: required by --schedule step)")
    opt.add_argument("--decay-factor", type=positive_float, metavar="F", help="step schedule: factor (default 0.1)")
    opt.add_argument("--scale-lr", type=positive_int, metavar="B0",
                     help="linear scaling rule: --lr is tuned for global batch B0; use lr * B / B0 "
                          "(B: --batch-size, or all rows for gd; default: off)")
    opt.add_argument("--local-state", choices=LOCAL_STATES,
                     help="local-sgd: keep optimizer state per rank (default), average it, or reset it at each sync")
    prep = train.add_argument_group("data preparation")
    prep.add_argument("--test-fraction", type=fraction, metavar="F",
                      help="hold out a stratified fraction F of --data as test data (instead of --test-data; "
                           "default: none)")
    prep.add_argument("--split-seed", type=int, default=0, help="seed of the --test-fraction split (default 0)")
    prep.add_argument("--standardize", action="store_true",
                      help="scale features by the training rows' global mean and standard deviation (default: off)")


def check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject flag combinations that cannot apply to the chosen model, algorithm and optimizer
    (after ``resolve`` has filled in the defaults that depend on the data)."""
    minibatch = args.algorithm not in FULL_BATCH
    if not minibatch and args.batch_size is not None:
        parser.error(f"--batch-size has no effect with --algorithm {args.algorithm} (full batch); drop it or use sgd")
    if args.algorithm == "normal" and args.model != "linear":
        parser.error(f"--algorithm normal solves --model linear exactly, not {args.model}; use lbfgs or newton-cg")
    if args.algorithm == "newton-cg" and args.model == "mlp":
        parser.error("--algorithm newton-cg needs Hessian-vector products, which --model mlp lacks; use lbfgs")
    given = [n.replace("_", "-") for n in FIRST_ORDER_FLAGS if getattr(args, n) not in (None, 0, "sgd", "constant")]
    if args.algorithm in SOLVER_NAMES and given:  # flags of gradient steps, which a solver would ignore
        how = "solves exactly in one pass" if args.algorithm == "normal" else "chooses its own step sizes"
        parser.error(f"--{given[0]} has no effect with --algorithm {args.algorithm}, which {how}; drop it")
    averaging = issubclass(LOOPS[args.algorithm], LocalSGD)
    if averaging and args.sync_every is None:
        parser.error(f"--algorithm {args.algorithm} needs --sync-every H (local steps between averages)")
    if args.algorithm == "hierarchical-sgd" and args.sync_every_global is None:
        parser.error("--algorithm hierarchical-sgd needs --sync-every-global H2 (steps between averages over all "
                     "ranks)")
    if args.algorithm == "post-local-sgd" and args.switch_step is None:
        parser.error("--algorithm post-local-sgd needs --switch-step K (synchronous steps before local sgd)")
    only = [
        (("sync_every", "local_state", "max_drift", "drift_action"), averaging, "--algorithm local-sgd (or post-local-sgd, slowmo, hierarchical-sgd)"),
        (("accumulate", "sampling"), args.algorithm == "sgd", "--algorithm sgd"),
        (("deterministic",), args.algorithm in ("gd", "sgd"), "--algorithm gd or sgd"),
        (("switch_step",), args.algorithm == "post-local-sgd", "--algorithm post-local-sgd"),
        (("sync_every_global",), args.algorithm == "hierarchical-sgd", "--algorithm hierarchical-sgd"),
        (("graph", "consensus_every"), args.algorithm == "gossip", "--algorithm gossip"),
        (("slow_momentum", "slow_lr"), args.algorithm == "slowmo", "--algorithm slowmo"),
        (("history",), args.algorithm == "lbfgs", "--algorithm lbfgs"),
        (("tol",), args.algorithm in ("gd", "sgd", "lbfgs", "newton-cg"), "--algorithm gd, sgd, lbfgs or newton-cg"),
        (("n_iter_no_change",), args.algorithm in ("gd", "sgd") and args.tol is not None, "--tol with gd or sgd"),
        (("compress", "overlap"), args.algorithm in ("gd", "sgd"), "gradients (--algorithm gd or sgd)"),
        (("hidden", "activation", "loss"), args.model == "mlp", "--model mlp"),
        (("momentum",), args.optimizer in ("momentum", "nesterov"), "--optimizer momentum or nesterov"),
        (("betas", "eps"), args.optimizer in ("adam", "adamw"), "--optimizer adam or adamw"),
        (("weight_decay",), args.optimizer == "adamw", "--optimizer adamw (use --l2 with the others)"),
        (("decay_every", "decay_factor"), args.schedule == "step", "--schedule step"),
    ]
    for names, applies, where in only:
        for name in names:
            if getattr(args, name) not in (None, False) and not applies:
                parser.error(f"--{name.replace('_', '-')} only applies to {where}")
    if args.overwrite and args.resume:
        parser.error("--overwrite starts a new run and --resume continues one; give one of them")
    if args.overlap and (args.compress or args.allreduce not in ("auto", "ordered")):
        parser.error("--overlap reduces with the exact rank-ordered algorithm; drop --compress and --allreduce "
                     f"{args.allreduce}")
    if args.schedule == "step" and args.decay_every is None:
        parser.error("--schedule step needs --decay-every N (steps between decays)")
    if args.momentum is not None and args.momentum >= 1:
        parser.error(f"--momentum must be below 1, not {args.momentum}")
    if args.warmup_steps < 0:
        parser.error(f"--warmup-steps must be >= 0, not {args.warmup_steps}")
    if args.split_seed < 0:
        parser.error("--split-seed must be >= 0")
    if args.test_fraction is not None and args.test_data:
        parser.error("--test-fraction and --test-data both name test data; give one of them")
    check_selection(parser, args)


def prepare(args: argparse.Namespace, comm: "Comm", data: Dataset, test: Optional[Dataset],
            val: Optional[Dataset] = None) -> tuple:
    """Collective: classes, --test-fraction then --val-fraction, --impute and --standardize with the
    training rows' statistics, --dtype; return (train, test, val, schema).

    A classifier's labels become class indices 0..K-1 of the sorted distinct training labels.
    """
    classifier = args.model in ("logistic", "softmax") or (args.model == "mlp" and args.loss != "squared-error")
    given = [d for d in (test, val) if d is not None]
    classes = encode_labels(data, comm, *given) if classifier else require_numbers(f"--model {args.model}", data, *given)
    if classes is not None and (classes.size < 2 or (args.model == "logistic" and classes.size != 2)):
        need = "exactly 2 classes (use --model softmax for more)" if args.model == "logistic" else "2 classes or more"
        raise JobError(f"--model {args.model} needs {need}, but the labels of {args.data} are "
                       f"{describe_classes(classes)}")
    if args.test_fraction is not None:
        data, test = split(data, comm, args.test_fraction, args.split_seed, stratify=classifier)
    if args.val_fraction is not None:
        data, val = split(data, comm, args.val_fraction, args.split_seed + 1, stratify=classifier)
    held_out = [d for d in (test, val) if d is not None]
    fill = impute(data, comm, args.impute, *held_out) if args.impute else None
    scaling = standardize(data, comm, *held_out) if args.standardize else (None, None)
    if args.dtype != "float64":
        data, test, val = (None if d is None else as_dtype(d, args.dtype) for d in (data, test, val))
    schema = Schema(data.feature_names, data.label_name, classes, args.impute, fill, scaling[0], scaling[1])
    return data, test, val, schema


def model_options(args: argparse.Namespace, schema: Schema) -> dict:
    """The keyword options of the chosen model (the class count is that of the schema's classes)."""
    options = {k: getattr(args, k) for k in ("hidden", "activation", "loss") if getattr(args, k) is not None}
    if args.model == "softmax" or (args.model == "mlp" and args.loss != "squared-error"):
        options["n_classes"] = int(schema.classes.size)
    return options


# -- reading the user's files (issue 13) -----------------------------------------------------------


def add_data_flags(parser: Any, command: str) -> None:
    """Flags that say how to read files, and --impute (``command`` train) or --proba (predict)."""
    group = parser.add_argument_group("reading files")
    group.add_argument("--header", action=argparse.BooleanOptionalAction, default=None,
                       help="CSV: the first line names the columns (--header) or is data (--no-header); "
                            "default: data when all its fields are numbers, and the run says so; the run asks "
                            "when its only text fields could be labels")
    group.add_argument("--index", action=argparse.BooleanOptionalAction, default=None,
                       help="CSV: the first column is a row index to leave out (--index) or data (--no-index); default: "
                            "an index when it has no name, or, without a header line, when it counts up row by row")
    group.add_argument("--delimiter", metavar="C", help="CSV field separator (default ',', a tab for .tsv)")
    group.add_argument("--sparse", action=argparse.BooleanOptionalAction, default=None,
                       help="LIBSVM rows stay sparse (CSR; default) or become dense (--no-sparse)")
    if command == "train":
        group.add_argument("--impute", choices=IMPUTE,
                           help="fill missing cells with the training rows' global mean or median of the feature, "
                                "or 0; kept in the model, which predict applies (default: a missing cell is an error)")
    else:
        group.add_argument("--proba", action="store_true",
                           help="write class probabilities instead of class labels (classifiers)")


def data_options(args: argparse.Namespace, missing: bool = False) -> dict:
    """The keywords of ``load`` given by the data flags; ``missing``: NaN cells may stay (to be imputed)."""
    return {"label_column": args.label_column, "header": args.header, "delimiter": args.delimiter, "index": args.index,
            "sparse": args.sparse, "allow_missing": missing or getattr(args, "impute", None) is not None}


def describe_data(data: Dataset, schema: Schema) -> str:
    """One line: what was read, which column is the label, the classes, and what the reader decided."""
    label = f"label column {schema.label_name!r}" if schema.label_name is not None else "labels from the source"
    classes = "" if schema.classes is None else f", classes {describe_classes(schema.classes)}"
    filled = "" if schema.impute is None else f", missing cells filled with the training {schema.impute}"
    notes = "".join(f"; {note}" for note in data.notes)
    return f"data {data.spec}: {data.n_total} rows, {data.n_features} features, {label}{classes}{filled}{notes}"


def settings(args: argparse.Namespace, steps: int, batch: int) -> Settings:
    """The library's Settings from the flags, with --scale-lr applied (``batch``: the global batch)."""
    if args.warmup_steps > steps:
        raise JobError(f"--warmup-steps {args.warmup_steps} exceeds the {steps} training steps; use fewer")
    lr = optim.scale_lr(args.lr, batch, args.scale_lr) if args.scale_lr else args.lr
    given = {name: getattr(args, name, None) for name in SETTINGS_FLAGS}
    return Settings(steps=steps, lr=lr, **{k: v for k, v in given.items() if v is not None})


SETTINGS_FLAGS = tuple(f.name for f in fields(Settings) if f.name not in ("steps", "lr"))


def flag_words(message: str) -> str:
    """A library message with option names (``batch_size``) written as flags (``--batch-size``)."""
    return re.sub(r"\b(" + "|".join(SETTINGS_FLAGS) + r")\b(?=[ =])",
                  lambda m: "--" + m.group(1).replace("_", "-"), message)


# -- defaults that depend on the data, and configuration files ------------------------------------


def resolve(args: argparse.Namespace, comm: "Comm", data: Dataset) -> list[str]:
    """Collective: fill in --model, --algorithm, --batch-size, --lr, the length and --out from the
    data where they were not given; return one note for each default chosen."""
    notes = []
    if args.model is None:
        args.model = "mlp" if args.hidden is not None else _model_for(data, comm)
        notes.append(f"--model {args.model} (from the labels; give --model to choose)")
    if args.algorithm is None:
        convex = args.model in ("linear", "logistic", "softmax")
        args.algorithm = "gd" if convex and data.n_total <= GD_ROWS else "sgd"
        notes.append(f"--algorithm {args.algorithm} ({'full batch: ' if args.algorithm == 'gd' else ''}"
                     f"{data.n_total:,} rows)")
    if args.algorithm not in FULL_BATCH and args.batch_size is None:
        args.batch_size = min(DEFAULT_BATCH, data.n_total)  # a smaller data set: all of it in each batch
        notes.append(f"--batch-size {args.batch_size}")
    if args.lr is None and args.algorithm not in SOLVER_NAMES:  # the solvers choose their own steps
        args.lr = DEFAULT_LR[args.optimizer]
        notes.append(f"--lr {args.lr:g} (the default of --optimizer {args.optimizer})")
    if args.steps is None and args.epochs is None:
        if args.algorithm in SOLVER_NAMES:
            args.steps = solver_steps(LOOPS[args.algorithm]())
        elif args.algorithm == "gd":
            args.steps = GD_STEPS
        else:
            args.epochs = DEFAULT_EPOCHS
    if args.out is None:
        stamp = comm.gather_text(time.strftime("%Y%m%d-%H%M%S"))[0]  # rank 0's clock names it for all
        args.out = os.path.join("runs", f"{args.model}-{stamp}")
    return notes


def _model_for(data: Dataset, comm: "Comm") -> str:
    """Collective: logistic for two classes (integers or text), softmax for more, linear otherwise."""
    y = data.y
    text = is_text(y)
    integer = 1 if y is not None and (text or bool(np.all(np.isfinite(y)) and np.all(y == np.round(y)))) else 0
    if comm.Allreduce(np.array([integer], dtype=np.int64), "min")[0] == 0:
        return "linear"
    k = find_classes(y, comm).size
    return "linear" if k > MAX_CLASSES and not text else ("logistic" if k == 2 else "softmax")
