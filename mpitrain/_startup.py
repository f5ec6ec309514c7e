"""The command line's first act: block its stop signals before anything else is imported.

``python -m mpitrain`` and the ``mpitrain`` script import this module first (from
``mpitrain/__init__``), and it needs only ``os``, ``signal`` and ``sys``, which the interpreter
has already loaded. From here on SIGUSR1, SIGTERM and SIGINT wait, blocked, until
``guard.SignalGuard`` takes them with a thread of its own; before this point (the interpreter's
own start-up and ``site``) they have their default actions (see the README's fault table).
"""
import os
import signal
import sys

COMMAND_SIGNALS = (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT)


def launched_as_command() -> bool:
    """True in ``python -m mpitrain ...`` and the ``mpitrain`` script, not in a program importing mpitrain."""
    argv = getattr(sys, "orig_argv", [])
    return ["-m", "mpitrain"] in [argv[i : i + 2] for i in range(len(argv) - 1)] or \
        os.path.basename(sys.argv[0]) == "mpitrain"


def block_command_signals() -> None:
    """Block the command's stop signals in this (the main) thread if this process is the command line."""
    if launched_as_command():
        signal.pthread_sigmask(signal.SIG_BLOCK, COMMAND_SIGNALS)
