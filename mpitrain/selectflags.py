"""The flags of ``train`` for model selection and reporting: validation, early stopping, metrics, row weights."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any, Optional

from . import weighting
from .argtypes import fraction, non_negative_float, positive_int
from .data import Dataset
from .metrics import CLASSIFICATION, REGRESSION

if TYPE_CHECKING:
    from .comm import Comm


def metric_list(text: str) -> tuple[str, ...]:
    """argparse type: comma-separated metric names, e.g. accuracy,f1,auc."""
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    unknown = [n for n in names if n not in CLASSIFICATION + REGRESSION]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown metric {unknown[0] if unknown else text!r}; choose from "
                                         f"{','.join(CLASSIFICATION + REGRESSION)}")
    return names


def add_selection_flags(train: Any) -> None:
    """--val-data, --val-fraction, --eval-every, early stopping, --metrics."""
    select = train.add_argument_group("model selection")
    select.add_argument("--val-data", metavar="SPEC", help="validation rows, scored while training (default: none)")
    select.add_argument("--val-fraction", type=fraction, metavar="F",
                        help="hold out a stratified fraction F of the training rows for validation (default: none)")
    select.add_argument("--eval-every", type=positive_int, metavar="N",
                        help="score the validation rows every N steps (default: once per epoch) and at the end")
    select.add_argument("--early-stopping", action="store_true",
                        help="end training when --monitor has not improved for --patience evaluations; the model "
                             "saved is the best one (default: off)")
    select.add_argument("--patience", type=positive_int, metavar="K", help="evaluations without improvement (default 5)")
    select.add_argument("--min-delta", type=non_negative_float, metavar="D",
                        help="the smallest change that counts as an improvement (default 0)")
    select.add_argument("--monitor", metavar="val_loss|val_METRIC",
                        help="what early stopping watches: val_loss (default), the model's metric (val_accuracy, "
                             "val_rmse) or one of --metrics, e.g. val_f1")
    select.add_argument("--metrics", type=metric_list, metavar="M1,M2,...",
                        help="more scores of the validation and test rows: " + ",".join(CLASSIFICATION)
                             + " (classifiers; f1, precision, recall: macro averages; auc: binary) or "
                             + ",".join(REGRESSION) + " (regression); default: the model's metric only")
    select.add_argument("--log-csv", metavar="FILE.csv",
                        help="append every metrics record (training and validation) to FILE as step,name,value "
                             "rows, flushed as written (default: none; metrics.jsonl has them too)")
    select.add_argument("--tensorboard", metavar="DIR",
                        help="write every metrics record as TensorBoard scalars into DIR (needs tensorboardX: pip "
                             "install 'mpitrain[tensorboard]'; default: none)")
    weights = train.add_argument_group("row weights (gd, sgd, lbfgs, newton-cg)")
    weights.add_argument("--weight-column", metavar="NAME|INDEX",
                         help="a feature column holding each row's weight (taken out of the features; in the "
                              "test and validation data too, where it weights the scores)")
    weights.add_argument("--class-weight", choices=("balanced",),
                         help="weight the training rows of class c by N / (K n_c) (scikit-learn's balanced, global "
                              "counts), times --weight-column's weights")


def check_selection(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject selection flags that cannot apply (after ``flags.resolve``)."""
    if args.val_fraction is not None and args.val_data:
        parser.error("--val-fraction and --val-data both name validation data; give one of them")
    validating = args.val_fraction is not None or args.val_data is not None
    for name in ("eval_every", "early_stopping"):
        if getattr(args, name) not in (None, False) and not validating:
            parser.error(f"--{name.replace('_', '-')} needs validation rows: --val-fraction F or --val-data SPEC")
    for name in ("patience", "min_delta", "monitor"):
        if getattr(args, name) is not None and not args.early_stopping:
            parser.error(f"--{name.replace('_', '-')} only applies to --early-stopping")
    if args.metrics and not (validating or args.test_data or args.test_fraction is not None):
        parser.error("--metrics scores validation or test rows: give --val-fraction, --val-data, --test-fraction "
                     "or --test-data")
    classifier = args.model in ("logistic", "softmax") or (args.model == "mlp" and args.loss != "squared-error")
    weighted = args.weight_column is not None or args.class_weight is not None
    if weighted and (args.algorithm not in ("gd", "sgd", "lbfgs", "newton-cg") or args.deterministic
                     or (args.accumulate or 1) > 1):
        parser.error(f"row weights (--weight-column, --class-weight) train with --algorithm gd, sgd, lbfgs or "
                     f"newton-cg, without --accumulate or --deterministic, not {args.algorithm}")
    if args.class_weight and not classifier:
        parser.error(f"--class-weight applies to classifiers, not to --model {args.model} (regression)")
    allowed = CLASSIFICATION if classifier else REGRESSION
    wrong = [n for n in args.metrics or () if n not in allowed]
    if wrong:
        parser.error(f"--metrics {wrong[0]} does not apply to --model {args.model} "
                     f"({'a classifier' if classifier else 'regression'}); choose from {','.join(allowed)}")
    if args.monitor and args.monitor not in ("val_loss", "val_accuracy" if classifier else "val_rmse",
                                             *(f"val_{n}" for n in args.metrics or ())):
        parser.error(f"--monitor {args.monitor} is not scored; use val_loss, the model's metric "
                     f"(val_{'accuracy' if classifier else 'rmse'}) or val_NAME for a NAME in --metrics")


def take_weight_column(args: argparse.Namespace, *datasets: Optional[Dataset]) -> list[Optional[Dataset]]:
    """Each data set without --weight-column's feature, which becomes its raw row weights."""
    if not args.weight_column:
        return list(datasets)
    return [None if d is None else weighting.take_column(d, args.weight_column) for d in datasets]


def weigh(args: argparse.Namespace, comm: "Comm", n_classes: int, data: Dataset,
          *held_out: Optional[Dataset]) -> list[Optional[Dataset]]:
    """Collective, after the splits: the training rows times --class-weight, and every data set's
    weights scaled to mean 1 (``weighting.with_weights``)."""
    if args.class_weight:
        data = weighting.with_weights(data, weighting.balanced(data, comm, n_classes), comm)
    elif data.weight is not None:
        data = weighting.with_weights(data, data.weight, comm)
    return [data, *(d if d is None or d.weight is None else weighting.with_weights(d, d.weight, comm)
                    for d in held_out)]
