"""Counting a classifier's hits: the confusion matrix and the accuracy of each class.

A low-level module (no eva9 imports): the engine records these in ``metrics.json`` and ``eva9.analysis``, which
re-exports them, builds the error analysis on them.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["class_accuracy", "confusion_matrix"]


def _as_long_tensor(values) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values) if not torch.is_tensor(values) else values).long().flatten().cpu()


def confusion_matrix(preds, labels, num_classes: int = 10) -> np.ndarray:
    """Counts as an int64 array: row = true class, column = predicted class."""
    preds, labels = _as_long_tensor(preds), _as_long_tensor(labels)
    if preds.shape != labels.shape:
        raise ValueError(f"preds and labels differ in length: {preds.numel()} vs {labels.numel()}")
    for name, values in (("preds", preds), ("labels", labels)):
        if values.numel() and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes - 1}]")
    counts = torch.bincount(labels * num_classes + preds, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).numpy().astype(np.int64)


def class_accuracy(preds, labels, num_classes: int = 10) -> np.ndarray:
    """Fraction of each true class predicted correctly (float64, shape (num_classes,); NaN for an absent class)."""
    cm = confusion_matrix(preds, labels, num_classes)
    totals = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(cm) / np.maximum(totals, 1), np.nan)
