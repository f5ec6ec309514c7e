"""Configuration files for ``train``: TOML with the flags' names as keys, read back as flags that
the command line overrides, and the effective configuration printed in the same form."""
from __future__ import annotations

import argparse
import difflib
import json
from typing import Any

from .errors import UsageError


def read_config(path: str, parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """The flags a TOML file gives, as command-line words to put before ``argv`` (whose flags win).

    Keys are the flag names (``batch-size`` or ``batch_size``); UsageError names a key that is
    no flag, with the closest ones.
    """
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise UsageError("--config needs Python 3.11 or the tomli package (pip install tomli)") from None
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except OSError as exc:
        raise UsageError(f"--config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--config {path} is not valid TOML: {exc}") from None
    known = {a.dest: a for a in parser._actions if a.option_strings}  # noqa: SLF001 - argparse has no public list
    words: list[str] = []
    for key, value in table.items():
        dest = key.replace("-", "_")
        if dest not in known or dest in ("config", "print_config", "help"):
            close = difflib.get_close_matches(key.replace("_", "-"), [d.replace("_", "-") for d in known], 3)
            raise UsageError(f"--config {path}: {key!r} is not a flag of train"
                             + (f"; did you mean {', '.join(close)}?" if close else ""))
        flag = known[dest].option_strings[-1] if dest != "progress" else "--progress"
        if any(word == flag or word.startswith(flag + "=") for word in argv) or _excluded_by(dest, argv):
            continue  # the command line says otherwise
        if isinstance(value, bool):
            if value or dest == "progress":
                words.append(flag if value else "--no-progress")
        elif isinstance(value, list):
            words += [flag, ",".join(str(v) for v in value)]
        else:
            words += [flag, str(value)]
    return words


def _excluded_by(dest: str, argv: list[str]) -> bool:
    """Whether the command line gives the other of --epochs and --steps."""
    other = {"epochs": "--steps", "steps": "--epochs"}.get(dest)
    return other is not None and any(word == other or word.startswith(other + "=") for word in argv)


def effective_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict:
    """Every train flag's value after defaults (None and off flags left out), keyed by flag name."""
    out = {}
    for action in parser._actions:  # noqa: SLF001
        if not action.option_strings or action.dest in ("help", "config", "print_config"):
            continue
        value = getattr(args, action.dest, None)
        if value is None or value is False:
            continue
        out[action.dest.replace("_", "-")] = list(value) if isinstance(value, tuple) else value
    return out


def to_toml(config: dict) -> str:
    """``config`` (flag name -> str, int, float, bool or list) as TOML lines."""
    def text(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return repr(value)
        if isinstance(value, list):
            return "[" + ", ".join(text(v) for v in value) + "]"
        return json.dumps(str(value))

    return "".join(f"{key} = {text(value)}\n" for key, value in config.items())
