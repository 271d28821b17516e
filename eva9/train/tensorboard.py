"""TensorBoard event files for a run: :class:`EpochLogger` writes each epoch's learning rate, losses, accuracies
and images/s as scalars (``TrainConfig.tensorboard``, ``eva9 train --tensorboard DIR``).

TensorBoard is optional (``pip install eva9[tensorboard]``): nothing here imports it until a logger is opened, and
then a missing package is one clear error. The end-of-run figures (confusion matrix, GradCAM grid) are drawn above
the engine, by :mod:`eva9.dashboard`, into the same folder.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["SCALARS", "EpochLogger", "require_tensorboard", "summary_writer", "check_writable"]

SCALARS: dict[str, str] = {
    "lr": "lr",
    "train_loss": "loss/train",
    "test_loss": "loss/test",
    "train_acc": "accuracy/train",
    "test_acc": "accuracy/test",
    "train_images_per_s": "images_per_s/train",
    "eval_images_per_s": "images_per_s/eval",
}
"""History record field → TensorBoard tag (tags sharing a prefix share a chart)."""


def require_tensorboard() -> Any:
    """``torch.utils.tensorboard.SummaryWriter``; a one-line ImportError saying what to install when it is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ImportError(
            "TensorBoard logging needs the tensorboard package: pip install 'eva9[tensorboard]' (or tensorboard)"
        ) from None
    return SummaryWriter


def check_writable(folder: str | os.PathLike | None) -> None:
    """Make the TensorBoard folder (if missing) and check a file can be written in it, before a run writes
    anything; a one-line ValueError naming it otherwise. None: nothing to check."""
    if folder is None:
        return
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=os.fspath(folder)):
            pass
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise ValueError(
            f"cannot write TensorBoard files into {folder} ({reason}); nothing was trained or written. Choose a "
            "folder you can write to"
        ) from None


def summary_writer(folder: str | os.PathLike) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter`` on ``folder`` (see :func:`require_tensorboard`)."""
    return require_tensorboard()(log_dir=os.fspath(folder))


class EpochLogger:
    """Each epoch's record as TensorBoard scalars at step = epoch; a no-op when ``folder`` is None.

    Use as a context manager (the writer is flushed and closed on leaving, also after an error)."""

    def __init__(self, folder: str | os.PathLike | None) -> None:
        self.writer = summary_writer(folder) if folder is not None else None

    def log_epoch(self, record: dict[str, Any]) -> None:
        """Write the fields of ``record`` named in :data:`SCALARS` (those it has) at step ``record["epoch"]``."""
        if self.writer is None:
            return
        for field, tag in SCALARS.items():
            if field in record:
                self.writer.add_scalar(tag, float(record[field]), global_step=int(record["epoch"]))
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self) -> EpochLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
