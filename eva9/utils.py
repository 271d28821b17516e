"""Reproducibility and device helpers shared by the package and the book."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["seed_everything", "pick_device"]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU) so that a run can be repeated."""
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def pick_device(preferred: str | None = None) -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then CPU; ``preferred`` ("cpu", "cuda:1", ...) wins."""
    if preferred not in (None, "", "auto"):
        device = torch.device(preferred)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {preferred!r} was asked for, but CUDA is not available here; use 'cpu' or 'auto'")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device {preferred!r} was asked for, but MPS is not available here; use 'cpu' or 'auto'")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
