"""``predict``: every rank predicts its share of the rows; rank 0 writes them in row order.

The trained model comes from a run directory or its ``model.npz`` (``--from``). The file the
predictions go to is chosen by its extension: ``.npy``, ``.csv`` / ``.tsv`` (with a header) or
``.parquet``.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Union

import numpy as np

from .. import flags, models
from ..comm import Comm
from ..data import load, open_source
from ..errors import UsageError
from ..inference import predict, score
from ..metrics import MetricError, check_names, n_classes_of
from ..selectflags import metric_list
from ..outputs import TABLES, check_distinct, spec_files, write_table
from . import say


def add_parser(sub: Any) -> None:
    """The predict subcommand's flags."""
    pred = sub.add_parser("predict", help="distributed inference; rank 0 writes the predictions in row order")
    pred.add_argument("--from", dest="trained", metavar="RUN_DIR|MODEL.npz",
                      help="the trained model: a run directory written by train, or its model.npz")
    pred.add_argument("--model", dest="trained_old", metavar="MODEL.npz", help=argparse.SUPPRESS)  # the old name
    pred.add_argument("--data", required=True, metavar="SPEC", help="the rows to predict (as train's --data)")
    pred.add_argument("--label-column", metavar="NAME|INDEX",
                      help="the label column, to score the predictions (default: the model's own label column "
                           "when the file has it; no scoring when the file has only the features)")
    pred.add_argument("--out", required=True, metavar="FILE",
                      help=f"where rank 0 writes the predictions; the extension picks the format: "
                           f"{', '.join(TABLES)} (.csv, .tsv and .parquet with a header)")
    pred.add_argument("--metrics", type=metric_list, metavar="M1,M2,...",
                      help="more scores of the predictions against the labels, as train's --metrics (e.g. f1,auc)")
    flags.add_data_flags(pred, "predict")


def model_path(args: argparse.Namespace) -> str:
    """The model file named by --from (or the old --model): a run directory's model.npz, or the file."""
    given = args.trained or args.trained_old
    if given is None:
        raise UsageError("predict needs --from RUN_DIR (or --from RUN_DIR/model.npz): the run that trained the model")
    if args.trained and args.trained_old:
        raise UsageError("give the model once: --from (--model is its old name)")
    return given


def label_column(args: argparse.Namespace, model: models.Model, comm: Comm) -> Union[str, int, None]:
    """--label-column, or else the model's own label column when the data file has a column of that name."""
    if args.label_column is not None or model.schema is None or model.schema.label_name is None:
        return args.label_column
    with comm.together():
        source = open_source(args.data, None, model.n_features, header=args.header, delimiter=args.delimiter)
    names = getattr(getattr(source, "columns", None), "names", ())
    if model.schema.label_name not in names:
        return None
    say(comm, f"mpitrain: note: {args.data}: the label column is {model.schema.label_name!r}, as in training", sys.stderr)
    return model.schema.label_name


def column_names(model: models.Model, predictions: np.ndarray, labels: bool) -> list[str]:
    """Header names: "prediction" (values or labels), or "proba_<class>" per class probability column."""
    if labels or model.metric_name != "accuracy":
        return ["prediction"]
    classes = model.schema.classes if model.schema is not None else None
    k = predictions.shape[1] if predictions.ndim == 2 else 2
    names = [str(c) for c in classes] if classes is not None and len(classes) == k else [str(i) for i in range(k)]
    return [f"proba_{name}" for name in (names if predictions.ndim == 2 else names[1:])]


def as_written(labels: np.ndarray) -> np.ndarray:
    """Class labels (n,) for a text table: whole-number float labels (3.0, as a CSV's numbers are
    read) as integers (3), so the file shows the labels as the training file wrote them."""
    if labels.dtype.kind == "f" and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
        return labels.astype(np.int64)
    return labels


def run(args: argparse.Namespace, comm: Comm) -> int:
    """The predict subcommand."""
    with comm.together():
        path = model_path(args)
        model_file = os.path.join(path, "model.npz") if os.path.isdir(path) else path
        check_distinct({"--out": args.out}, {"the model": model_file, **{f"--data {args.data}": file
                                                                        for file in spec_files(args.data)}})
        extension = os.path.splitext(args.out)[1].lower()
        if extension not in TABLES:
            raise UsageError(f"--out {args.out!r} ends in {extension or 'no extension'}; give a file ending in "
                             f"{', '.join(TABLES)}")
        model, theta = models.load(path)
        if comm.rank == 0 and not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
            raise UsageError(f"the directory of --out {args.out!r} does not exist")
    options = flags.data_options(args, missing=model.schema is not None and model.schema.fill is not None)
    options["label_column"] = label_column(args, model, comm)
    data = load(args.data, comm, n_features=model.n_features, require_labels=False, **options)
    for note in data.notes:
        say(comm, f"mpitrain: note: {args.data}: {note}", sys.stderr)
    predictions, metric = predict(model, theta, data, comm, labels=not args.proba)
    with comm.together():
        if predictions is not None:
            if not args.proba and model.metric_name == "accuracy" and not args.out.lower().endswith(".npy"):
                predictions = as_written(predictions)
            write_table(args.out, predictions, column_names(model, predictions, not args.proba))
    scored = f"; {model.metric_name} {metric:.4f}" if metric is not None else ""
    if args.metrics:
        if metric is None:
            raise UsageError(f"--metrics scores predictions against labels, and {args.data} has none here; give "
                             "--label-column")
        k = n_classes_of(model)
        try:
            named = score(model, theta, data, comm, check_names(args.metrics, k > 0, k))
        except MetricError as exc:
            raise UsageError(f"--metrics: {exc}") from None
        scored += "".join(f", {name} {value:.4f}" for name, value in named.items() if name != model.metric_name)
    say(comm, f"predicted {data.n_total} rows on {comm.size} rank(s){scored}; wrote {args.out}")
    return 0

