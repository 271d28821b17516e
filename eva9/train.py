"""Training: configuration profiles, one explicit epoch loop, evaluation, run folders and resume.

Written in the style of torchvision's ``references/classification/train.py``: one function trains one epoch,
evaluation is separate, and one checkpoint holds everything a resumed run needs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

__all__ = ["History", "Predictions", "evaluate", "predict"]


# ------------------------------------------------------------------------------------------------------ history


@dataclass
class History:
    """Per-epoch records: epoch (1-based), train_loss, train_acc, test_loss, test_acc (fractions), lr, seconds."""

    epochs: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """``{"epochs": [...]}``, the layout of ``history.json``."""
        return {"epochs": [dict(e) for e in self.epochs]}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        """The inverse of :meth:`to_dict`."""
        if not isinstance(d, dict) or not isinstance(d.get("epochs"), list):
            raise ValueError('a history must be a dict {"epochs": [...]}')
        return cls([dict(e) for e in d["epochs"]])

    @classmethod
    def load(cls, path: str | os.PathLike) -> "History":
        """Read a ``history.json`` file (or the ``history.json`` inside a run folder)."""
        path = Path(path)
        if path.is_dir():
            path = path / "history.json"
        if not path.is_file():
            raise FileNotFoundError(f"no history at {path}; train with out=... to write one")
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def save(self, path: str | os.PathLike) -> None:
        """Write ``history.json`` atomically."""
        _write_text_atomic(Path(path), json.dumps(self.to_dict(), indent=2))

    def __len__(self) -> int:
        return len(self.epochs)

    def column(self, key: str) -> list:
        """One value per epoch, e.g. ``history.column("test_acc")``."""
        return [e[key] for e in self.epochs]


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------- evaluation


class Predictions(NamedTuple):
    """The model's output over a whole loader: logits [N, C] (CPU float), predicted and true labels [N] (long)."""

    logits: torch.Tensor
    preds: torch.Tensor
    labels: torch.Tensor


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _autocast(device: torch.device, amp_dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)


def _to_device(images: torch.Tensor, labels: torch.Tensor, device: torch.device):
    non_blocking = device.type == "cuda"
    images = images.to(device, non_blocking=non_blocking)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels.to(device, non_blocking=non_blocking)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    criterion: nn.Module | None = None,
    *,
    amp_dtype: torch.dtype | None = None,
) -> tuple[float, float]:
    """Mean loss (cross-entropy unless ``criterion`` is given) and accuracy in [0, 1] over a loader."""
    criterion = criterion if criterion is not None else nn.CrossEntropyLoss()
    device = _model_device(model)
    was_training = model.training
    model.eval()
    try:
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        for images, labels in loader:
            images, labels = _to_device(images, labels, device)
            with _autocast(device, amp_dtype):
                logits = model(images)
            loss_sum += criterion(logits.float(), labels).double() * labels.numel()
            correct += (logits.argmax(1) == labels).sum()
            seen += labels.numel()
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("evaluate() got an empty loader")
    return loss_sum.item() / seen, correct.item() / seen


@torch.no_grad()
def predict(model: nn.Module, loader, *, amp_dtype: torch.dtype | None = None) -> Predictions:
    """Logits, predictions and labels for every sample of ``loader``, in loader order, on the CPU."""
    device = _model_device(model)
    was_training = model.training
    model.eval()
    logits_all, labels_all = [], []
    try:
        for images, labels in loader:
            images, labels_dev = _to_device(images, labels, device)
            with _autocast(device, amp_dtype):
                logits = model(images)
            logits_all.append(logits.float().cpu())
            labels_all.append(torch.as_tensor(labels).long().cpu())
    finally:
        model.train(was_training)
    if not logits_all:
        raise ValueError("predict() got an empty loader")
    logits = torch.cat(logits_all)
    return Predictions(logits, logits.argmax(1), torch.cat(labels_all))
