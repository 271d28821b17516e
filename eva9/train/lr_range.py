"""The learning-rate range test (Smith, 2017, "Cyclical learning rates"; fastai's ``lr_find``): train a few hundred
steps while the learning rate grows exponentially between two bounds, and read off where the loss falls fastest.

:func:`lr_find` runs it on a config's own model, optimizer, loss, precision, memory format and training batches
(the :class:`~eva9.data.EpochSampler` epochs in order), then puts the model's and optimizer's state back bitwise.

Written here rather than with the ``torch-lr-finder`` package (its ``LRFinder``, read at version 0.2.x). That
package restores state exactly too (``reset()`` reloads deep copies of both state dicts), but it fits the engine
badly: it takes only a ``DataLoader`` or its own iterator class, so the device path's
:class:`~eva9.data.device_batches.DeviceBatches` would need an adapter; it moves inputs with ``.to(device)``, not
channels-last; its mixed precision takes an autocast config and insists on a ``GradScaler`` even for bf16, which
needs none; and its divergence test (``loss > diverge_th * best_loss``) is never true for a NaN loss, so a NaN run
goes on to the last step. The ramp itself is about forty lines here, with the engine's own parts.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ..utils import pick_device, seed_everything
from .config import TrainConfig, build_model, profile
from .loop import _autocast, _disabled_scaler, _is_channels_last, _model_device, _to_device
from .parts import _loaders, _training_parts

__all__ = ["LRFinding", "lr_find", "steepest_descent"]


class LRFinding(NamedTuple):
    """What a range test measured: each step's learning rate, loss and smoothed loss, and the suggestion (the
    learning rate where the smoothed loss falls steepest against log(lr); None when too few steps ran)."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float | None
    diverged: bool


def _check_bounds(start: float, end: float, steps: int) -> None:
    if not (isinstance(start, (int, float)) and math.isfinite(start) and start > 0):
        raise ValueError(f"lr_find: start={start!r} must be a finite learning rate > 0")
    if not (isinstance(end, (int, float)) and math.isfinite(end) and end > start):
        raise ValueError(f"lr_find: end={end!r} must be a finite learning rate above start={start!r}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 2:
        raise ValueError(f"lr_find: steps={steps!r} must be a whole number >= 2")


def _batches(loader) -> Iterator:
    """The loader's batches, epoch after epoch (each pass sets the epoch-seeded sampler's epoch, as fit does)."""
    set_epoch = getattr(getattr(loader, "sampler", None), "set_epoch", None)
    epoch = 0
    while True:
        if set_epoch is not None:
            set_epoch(epoch)
        yield from loader
        epoch += 1


def steepest_descent(lrs: list[float], smoothed: list[float], skip: float = 0.1) -> float | None:
    """The learning rate where ``smoothed`` falls steepest against log(lr), among the points up to the smoothed
    minimum (the climb is left out) after the first ``skip`` fraction (the noisy start), which a descent shorter than
    three points keeps; None when fewer than three points reach the minimum."""
    last = int(np.argmin(smoothed)) + 1
    first = min(int(len(lrs) * skip), max(0, last - 3))  # a short descent keeps its first points
    if last - first < 3:
        return None
    slopes = np.gradient(np.asarray(smoothed[first:last]), np.log(lrs[first:last]))
    return float(lrs[first + int(np.argmin(slopes))])


def lr_find(
    config: TrainConfig | None = None,
    *,
    start: float = 1e-5,
    end: float = 10.0,
    steps: int = 100,
    beta: float = 0.98,
    diverge: float = 4.0,
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    train_loader=None,
) -> LRFinding:
    """Run the range test: ``steps`` steps at learning rates growing exponentially from ``start`` to ``end``, the
    loss smoothed by an exponential moving average (``beta``, bias-corrected), stopping once the smoothed loss
    exceeds ``diverge`` times its minimum or the loss is not finite. The model's and optimizer's state (weights,
    batch-norm statistics, momentum, learning rates, train/eval mode) is restored bitwise afterwards.

    ``config=None`` takes :func:`profile`. ``model``/``optimizer`` default to fresh ones built from the config
    (after seeding with ``config.seed``, as :func:`fit` does); ``train_loader`` to the config's training batches.
    """
    _check_bounds(start, end, steps)
    config = (config if config is not None else profile()).validate()
    device = pick_device(config.device)
    seed_everything(config.seed)
    model = build_model(config.model) if model is None else model
    where, channels_last, was_training = _model_device(model), _is_channels_last(model), model.training
    saved_model = copy.deepcopy(model.state_dict())
    saved_optimizer = copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None
    if train_loader is None:
        train_loader = _loaders(config, device)[0]
    parts = _training_parts(model, config, device, len(train_loader))
    optimizer = optimizer if optimizer is not None else parts.optimizer
    scaler = parts.scaler if parts.scaler is not None else _disabled_scaler()
    lrs = (start * (end / start) ** (np.arange(steps) / (steps - 1))).tolist()
    found = LRFinding([], [], [], None, False)
    average, best = 0.0, math.inf
    model.train()
    try:
        batches = _batches(train_loader)
        for step, lr in enumerate(lrs, start=1):
            for group in optimizer.param_groups:
                group["lr"] = lr
            images, labels = next(batches)
            images, labels = _to_device(images, labels, device, _is_channels_last(model))
            with _autocast(device, parts.amp_dtype):
                loss = parts.criterion(model(images), labels)
            value = loss.item()
            if not math.isfinite(value):
                found = found._replace(diverged=True)
                break
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            average = beta * average + (1 - beta) * value
            smoothed = average / (1 - beta**step)
            found.lrs.append(lr)
            found.losses.append(value)
            found.smoothed.append(smoothed)
            if smoothed > diverge * best:
                found = found._replace(diverged=True)
                break
            best = min(best, smoothed)
    finally:
        model.load_state_dict(saved_model)
        model.to(where, memory_format=torch.channels_last if channels_last else torch.contiguous_format)  # type: ignore[call-overload]
        model.train(was_training)
        if saved_optimizer is not None:
            optimizer.load_state_dict(saved_optimizer)
    return found._replace(suggestion=steepest_descent(found.lrs, found.smoothed) if found.lrs else None)
