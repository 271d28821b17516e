"""Error analysis: class-wise accuracy, confusion matrix, the mistakes a model makes, and how well its confidence
matches its accuracy (calibration)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from .constants import SHORT_NAMES
from .metrics import _as_long_tensor, class_accuracy, confusion_matrix

__all__ = [
    "SHORT_NAMES",
    "JpegEffect",
    "jpeg_effect",
    "Mistakes",
    "ReliabilityTable",
    "class_accuracy",
    "confusion_matrix",
    "format_class_accuracy",
    "misclassified",
    "most_confused_pairs",
    "print_class_accuracy",
    "reliability_table",
]


def format_class_accuracy(acc, names: Sequence[str] = SHORT_NAMES) -> str:
    """One line per class in the seed notebook's format, ``Accuracy of plane : 94 %`` (percent truncated)."""
    acc = np.asarray(acc, dtype=np.float64).reshape(-1)
    if len(acc) != len(names):
        raise ValueError(f"got {len(acc)} accuracies for {len(names)} class names")
    lines = []
    for name, value in zip(names, acc):
        if np.isnan(value):
            lines.append(f"Accuracy of {name:>5} : n/a (no samples)")
        else:
            # The seed prints int(100 * correct / total); 1e-9 keeps e.g. 0.29 (100 * 0.29 = 28.999...) at 29.
            lines.append(f"Accuracy of {name:>5} : {int(100 * value + 1e-9):2d} %")
    return "\n".join(lines)


def print_class_accuracy(preds, labels, names: Sequence[str] = SHORT_NAMES) -> np.ndarray:
    """Print the seed's per-class accuracy lines and return the accuracies (fractions)."""
    acc = class_accuracy(preds, labels, num_classes=len(names))
    print(format_class_accuracy(acc, names))
    return acc


def most_confused_pairs(cm, k: int = 5) -> list[tuple[int, int, int]]:
    """The ``k`` most frequent mistakes as (true class, predicted class, count), most frequent first.

    Only off-diagonal cells with a non-zero count take part; ties go to the smaller (true, predicted) pair.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"a confusion matrix is square, got shape {cm.shape}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    pairs = [
        (int(t), int(p), int(cm[t, p]))
        for t in range(cm.shape[0])
        for p in range(cm.shape[1])
        if t != p and cm[t, p] > 0
    ]
    pairs.sort(key=lambda pair: (-pair[2], pair[0], pair[1]))
    return pairs[:k]


class Mistakes(NamedTuple):
    """Misclassified samples, most confident first: images as the loader gave them (normalized, CPU), true labels,
    predicted labels, the softmax probability of the (wrong) prediction, and each sample's position in loader order.
    """

    images: torch.Tensor
    labels: torch.Tensor
    preds: torch.Tensor
    confidences: torch.Tensor
    indices: torch.Tensor


def misclassified(model: nn.Module, loader, limit: int | None = 25) -> Mistakes:
    """The ``limit`` most confident mistakes over a loader (None: all), from one pass that keeps only those images.

    Each batch goes through :func:`eva9.train.predict`, so the images kept are exactly the ones the model saw,
    whatever the loader's order or random transforms.
    """
    from eva9.train.loop import predict

    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    kept: Mistakes | None = None
    seen = 0
    for images, labels in loader:
        out = predict(model, [(images, labels)])
        wrong = (out.preds != out.labels).nonzero().flatten()
        probs = out.logits.softmax(dim=1)
        batch = Mistakes(
            images=torch.as_tensor(images)[wrong].detach().cpu(),
            labels=out.labels[wrong],
            preds=out.preds[wrong],
            confidences=probs[wrong, out.preds[wrong]],
            indices=wrong + seen,
        )
        seen += len(out.labels)
        kept = batch if kept is None else Mistakes(*(torch.cat(pair) for pair in zip(kept, batch)))
        kept = _most_confident(kept, limit)
    if kept is None:
        raise ValueError("misclassified() got an empty loader")
    return kept


def _most_confident(mistakes: Mistakes, limit: int | None) -> Mistakes:
    """Sorted by confidence, highest first (ties: earlier sample first), cut to ``limit``."""
    by_index = torch.argsort(mistakes.indices, stable=True)
    order = by_index[torch.argsort(-mistakes.confidences[by_index], stable=True)][:limit]
    return Mistakes(*(field[order] for field in mistakes))


# ------------------------------------------------------------------------------------------------- calibration


class ReliabilityTable(NamedTuple):
    """Predictions grouped by confidence into equal-width bins: per bin (shape (bins,)) the count, the mean
    confidence and the accuracy (NaN for an empty bin); ``edges`` (bins + 1,) run from 0 to 1; ``ece`` is the
    expected calibration error, the count-weighted mean of |accuracy − confidence| over the bins.
    """

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    ece: float


def reliability_table(probs, labels, bins: int = 15) -> ReliabilityTable:
    """Reliability table and expected calibration error from softmax probabilities (N×C) and true labels (N,).

    A prediction's confidence is its highest probability (``predict(...).logits.softmax(1)`` gives ``probs``).
    Bin m holds confidences in ((m−1)/bins, m/bins], the first bin also 0; 15 bins as in Guo et al. (2017),
    "On calibration of modern neural networks". ECE = Σ_m (n_m / N) |acc_m − conf_m|.
    """
    probs = np.asarray(probs.detach().cpu() if torch.is_tensor(probs) else probs, dtype=np.float64)
    labels = _as_long_tensor(labels).numpy()
    if probs.ndim != 2 or probs.shape[0] != labels.shape[0] or probs.shape[0] == 0:
        raise ValueError(f"give probabilities N×C and N labels (N > 0), got shapes {probs.shape} and {labels.shape}")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if probs.min() < 0 or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("each row of probs must be probabilities summing to 1: apply softmax to logits first")
    if labels.min() < 0 or labels.max() >= probs.shape[1]:
        raise ValueError(f"labels must lie in [0, {probs.shape[1] - 1}]")
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.searchsorted(edges[1:-1], confidence, side="left")  # bin m: edges[m] < confidence <= edges[m + 1]
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(which, weights=confidence, minlength=bins) / counts
        accuracy = np.bincount(which, weights=correct, minlength=bins) / counts
    filled = counts > 0
    ece = float(np.sum(counts[filled] / counts.sum() * np.abs(accuracy[filled] - mean_confidence[filled])))
    return ReliabilityTable(edges, counts.astype(np.int64), mean_confidence, accuracy, ece)


# ------------------------------------------------------------------------------------ mistakes within a group


ANIMALS: tuple[bool, ...] = tuple(name in ("bird", "cat", "deer", "dog", "frog", "horse") for name in SHORT_NAMES)
"""For each CIFAR-10 class in label order, whether it is an animal (else a vehicle): the book's two groups."""


class GroupShare(NamedTuple):
    """Of ``mistakes`` (the off-diagonal total), the share whose true and predicted class share a group:
    ``observed`` in the matrix, ``expected`` if true and predicted class were independent given the margins."""

    mistakes: int
    observed: float
    expected: float


def within_group_share(cm, groups: Sequence) -> GroupShare:
    """Observed and expected share of a confusion matrix's mistakes that stay within a group of classes.

    ``groups[i]`` names class i's group (any hashable). Only the off-diagonal cells count. With r_i the mistakes of
    true class i (row totals) and c_j the mistakes predicted as j (column totals), the expected count of cell
    i ≠ j is proportional to r_i·c_j, scaled so that the off-diagonal cells hold all the mistakes; ``expected``
    is the within-group cells' part of that. With equal margins it is the share of within-group cells among the
    off-diagonal ones (42 of 90 for six animals and four vehicles). NaN where there is no mistake.
    """
    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or len(groups) != cm.shape[0]:
        raise ValueError(f"give a square confusion matrix and one group per class, got {cm.shape} and {len(groups)}")
    if (cm < 0).any():
        raise ValueError("confusion counts must be >= 0")
    off = ~np.eye(len(cm), dtype=bool)
    same = np.equal.outer(np.asarray(groups, dtype=object), np.asarray(groups, dtype=object)) & off
    wrong = np.where(off, cm, 0.0)
    mistakes = wrong.sum()
    if mistakes == 0:
        return GroupShare(0, float("nan"), float("nan"))
    outer = np.outer(wrong.sum(axis=1), wrong.sum(axis=0))  # r_i · c_j
    expected = outer[same].sum() / outer[off].sum()  # > 0: a mistake in cell (i, j) makes r_i, c_j > 0
    return GroupShare(int(round(mistakes)), float(wrong[same].sum() / mistakes), float(expected))


class JpegEffect(NamedTuple):
    """What re-encoding test images as JPEG does: to the pixels, and to a model's accuracy."""

    images: int
    quality: int
    pixel_difference: float
    """Mean absolute difference from the originals, grey levels (0..255) per pixel and channel."""
    accuracy: float
    """The model's accuracy on the original images."""
    accuracy_jpeg: float
    """Its accuracy on their JPEG re-encoding."""


def jpeg_effect(model: nn.Module, dataset, quality: int = 75, batch_size: int = 200) -> JpegEffect:
    """Re-encode ``dataset`` (a CIFAR10Dataset) as JPEG at ``quality``; the pixel difference and the model's
    accuracy (float32, test pipeline) on the originals and on the re-encoding."""
    from torch.utils.data import DataLoader

    from eva9.data import jpeg_copy, pixel_difference
    from eva9.train.loop import predict
    from eva9.transforms import test_transforms

    original = dataset.subset(range(len(dataset)))  # a copy whose transform can be set
    original.transform = test_transforms()
    encoded = jpeg_copy(original, quality)

    def accuracy(images) -> float:
        out = predict(model, DataLoader(images, batch_size=batch_size, shuffle=False))
        return float((out.preds == out.labels).float().mean())

    return JpegEffect(
        len(original), quality, pixel_difference(original, encoded), accuracy(original), accuracy(encoded)
    )
