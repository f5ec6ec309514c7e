"""``python -m mpitrain COMMAND``: every rank runs the same command; rank 0 talks.

This module holds the grammar and the dispatch: ``flags.py`` has train's flag table, and the
commands that do work live in ``commands/`` (train, predict) or with their subject (explain,
doctor, bench); each calls the library and prints.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
from typing import NoReturn, Optional, Sequence

from . import collectives, configfile, doctor, explain, flags
from ._version import __version__
from .algorithms import OptionError
from .bench import allreduce as bench_allreduce
from .bench import train as bench_train
from .commands import launcher_rank, say
from .commands import predict as predict_command
from .commands import train as train_command
from .comm import world
from .errors import JobError, UsageError
from .guard import guard_signals, limit_blas_threads, refuse_mismatched_launch, start_up_watchdog
from .plot import plot


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


def build_parser() -> Parser:
    """The command-line grammar."""
    prog = "mpitrain" if os.path.basename(sys.argv[0]) == "mpitrain" else "python -m mpitrain"
    parser = Parser(prog=prog, description="Data-parallel training of NumPy models over MPI.")
    parser.add_argument("--version", action="version", version=f"mpitrain {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    train_parser = sub.add_parser("train", help="train a model; rank 0 writes OUT/model.npz, metrics.jsonl, summary.json")
    flags.add_train_flags(train_parser)
    predict_command.add_parser(sub)
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
    if args.command == "train":  # MPI_Init waits for every rank (and holds the GIL): the backstop ends a lost one
        start_up_watchdog(args.watchdog_seconds, launcher_rank(), lambda: False, "starting MPI (MPI_Init waits for "
                          "every rank of the job to arrive)")
    comm = world()
    if args.command in ("train", "predict"):
        refuse_mismatched_launch(comm.size)  # before reading or writing anything
        limit_blas_threads(comm.ranks_on_node())
    if args.command == "doctor":
        return doctor.run(args, comm)
    if args.command == "train":
        start_up_watchdog(args.watchdog_seconds, comm.rank, lambda: comm.busy)  # until the first step
        try:
            return train_command.run(args, comm)
        except OptionError as exc:
            raise JobError(flags.flag_words(str(exc))) from None
        finally:
            start_up_watchdog(0, comm.rank, lambda: False)
    if args.command == "predict":
        return predict_command.run(args, comm)
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
