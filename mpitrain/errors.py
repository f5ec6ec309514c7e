"""The two kinds of failure mpitrain reports without a traceback."""
from __future__ import annotations


class UsageError(Exception):
    """Bad input from the user (a flag, a file, a value): the message says what and how to fix it."""


class JobError(Exception):
    """A failure every rank already knows about; rank 0 prints the message once, all ranks exit 2."""
