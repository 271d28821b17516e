"""What the command line says when something fails: one line, in its own words.

The library's messages name Python arguments (``resume=True``, ``root=...``, ``TrainConfig.batch_size=``);
:func:`failure_line` rewrites them as the flags a user of ``eva9`` types (``--resume``, ``--data-dir``,
``--batch-size``), and names the type of an unexpected error.
"""

from __future__ import annotations

import re

from .files import WriteError

__all__ = ["AS_FLAGS", "in_cli_words", "failure_line"]

AS_FLAGS: tuple[tuple[str, str], ...] = (
    ("pass resume=True to continue it", "pass --resume to continue it"),
    ("resume=True needs out=", "--resume needs --out"),
    ("with resume=True (or `eva9 train --out DIR --resume`)", "with `eva9 train --out DIR --resume`"),
    ("resume=True", "--resume"),
    ("choose another out folder", "choose another --out folder"),
    ("in another out folder", "in another --out folder"),
    ("Use another out folder", "Use another --out folder"),
    ("Point data_dir at", "Point --data-dir at"),
    ("Pass its path as root=... or set", "Pass its path as --data-dir or set"),
    ("written by fit(out=...)", "written by `eva9 train --out DIR`"),
    ("and download=False", "and downloading is off"),
    ("Lower batch_size or raise train_per_class", "Lower --batch-size or raise --train-per-class"),
)
"""The library's words for its arguments, and the command line's flags for them."""

_FIELD_FLAGS = ("epochs", "batch_size", "lr", "seed", "train_per_class", "test_per_class", "device", "workers")
"""TrainConfig fields that ``eva9 train`` sets with a flag of the same name."""

EXPECTED = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, FloatingPointError)
"""Errors that say what to do in their message, shown without their type (WriteError too)."""


def in_cli_words(message: str) -> str:
    """``message`` with the library's argument names replaced by the command line's flags."""
    for python, flag in AS_FLAGS:
        message = message.replace(python, flag)
    return re.sub(
        rf"(?:TrainConfig\.)?(?<![\w-])({'|'.join(_FIELD_FLAGS)})=",  # TrainConfig.batch_size=0 -> --batch-size 0
        lambda match: f"--{match.group(1).replace('_', '-')} ",
        message,
    )


def failure_line(error: BaseException) -> str:
    """One line for ``error``, in flags rather than Python arguments; an unexpected error also names its type."""
    message = in_cli_words(" ".join(str(error).split())) or type(error).__name__
    if not isinstance(error, (*EXPECTED, WriteError)):
        message = f"{type(error).__name__}: {message} (set EVA9_DEBUG=1 for the traceback)"
    return message
