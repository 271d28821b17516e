"""CIFAR-10: classes, channel statistics, datasets and loaders."""

from __future__ import annotations

__all__ = ["CLASSES", "MEAN", "STD"]

CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
"""The ten classes in CIFAR-10 label order."""

MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
"""Per-channel mean of the official CIFAR-10 training images, pixel values in [0, 1]."""

STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)
"""Per-channel standard deviation over all training pixels (not the widely copied 0.2023, 0.1994, 0.2010)."""
