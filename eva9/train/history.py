"""A run's per-epoch records: :class:`History`, the layout of ``history.json``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from ..files import write_atomic
from .config import _read_run_json

__all__ = ["History"]


@dataclass
class History:
    """Per-epoch records: epoch (1-based), train_loss, train_acc, test_loss, test_acc (fractions), lr, seconds.

    ``seconds`` is the epoch's wall time, training and evaluation together; runs written by :func:`fit` also hold
    ``train_images_per_s`` and ``eval_images_per_s``, the rates of the two parts.

    ``train_loss`` is the training criterion's (label-smoothed where the config asks for it), averaged over the
    epoch's steps while the weights change; ``test_loss`` is plain cross-entropy after the epoch; ``lr`` is the
    learning rate of the epoch's first step.
    """

    epochs: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """``{"epochs": [...]}``, the layout of ``history.json``."""
        return {"epochs": [dict(e) for e in self.epochs]}

    @classmethod
    def from_dict(cls, d: dict) -> History:
        """The inverse of :meth:`to_dict`."""
        if not isinstance(d, dict) or not isinstance(d.get("epochs"), list):
            raise ValueError('a history must be a dict {"epochs": [...]}')
        return cls([dict(e) for e in d["epochs"]])

    @classmethod
    def load(cls, path: str | os.PathLike) -> History:
        """Read a ``history.json`` file (or the ``history.json`` inside a run folder)."""
        return cls.from_dict(_read_run_json(path, "history.json", "train with out=... to write one"))

    def save(self, path: str | os.PathLike) -> None:
        """Write ``history.json`` atomically."""
        write_atomic(path, json.dumps(self.to_dict(), indent=2))

    def __len__(self) -> int:
        return len(self.epochs)

    def column(self, key: str) -> list:
        """One value per epoch, e.g. ``history.column("test_acc")``."""
        return [e[key] for e in self.epochs]
