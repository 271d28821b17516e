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

import contextlib
import copy
import math
from collections.abc import Generator, Iterable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ..utils import pick_device, seed_everything
from .config import TrainConfig, build_model, profile
from .loop import _autocast, _disabled_scaler, _is_channels_last, _model_device, _to_device
from .parts import _loaders, _training_parts

__all__ = ["DIVERGE", "LRFinding", "lr_find", "read_range_test", "steepest_descent"]

DIVERGE = 2.0
"""The range test stops once its smoothed loss exceeds this many times its minimum. fastai stops at four times, on
100 steps smoothed with beta 0.98; on the training chapter's short test (48 steps of 16 images, beta 0.9) the loss
of single steps reached five times its minimum while the smoothed loss peaked at 2.9 times, so four reported no
divergence where the loss had plainly blown up. Stopping earlier costs nothing: the suggestion lies before the
minimum."""

MIN_DESCENT = 5
"""A suggestion needs at least this many steps from the end of the noisy start to the smoothed minimum: the
steepest of three or four noisy points says nothing."""

FALL_OVER_NOISE = 2.0
"""A suggestion needs the smoothed loss to fall, over those steps, by more than this many times the scatter of one
step's loss (at the start of training about 0.1 on 2.3 for batches of 16 images): a smaller fall may be noise, and
the steepest point of a noisy curve that hardly falls is where the noise happened to dip."""


class LRFinding(NamedTuple):
    """What a range test measured: each step's learning rate, loss and smoothed loss, the suggestion (the learning
    rate where the smoothed loss falls steepest against log(lr); None when the loss did not fall enough before its
    minimum to say) and whether it stopped because the loss diverged."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float | None
    diverged: bool
    diverge: float = DIVERGE
    """The factor over its minimum at which the smoothed loss counted as diverged."""

    def stop_reason(self) -> str | None:
        """Why the test stopped before its last step ("the smoothed loss passed twice its minimum", "the next loss
        was not finite"), or None when it ran to the end."""
        if not self.diverged:
            return None
        if self.smoothed and self.smoothed[-1] > self.diverge * min(self.smoothed):
            factor = "twice" if self.diverge == 2 else f"{self.diverge:g} times"
            return f"the smoothed loss passed {factor} its minimum"
        return "the next loss was not finite"

    def summary(self) -> str:
        """Three short lines: the steps, where and why the test stopped, and the suggestion or why there is none."""
        if not self.lrs:
            return "no step recorded: the first loss was not finite"
        reason = self.stop_reason()
        stop = f"stopped at lr {self.lrs[-1]:.3g}, the loss diverged ({reason})" if reason else "no divergence"
        if self.suggestion is not None:
            advice = f"suggestion {self.suggestion:.3g} (where the smoothed loss fell fastest)"
        else:
            advice = "no suggestion: the loss did not fall clearly before it rose (too short to suggest one)"
        return f"{len(self.lrs)} steps from lr {self.lrs[0]:.3g} to {self.lrs[-1]:.3g}\n{stop}\n{advice}"


def _check_bounds(start: float, end: float, steps: int) -> None:
    if not (isinstance(start, (int, float)) and math.isfinite(start) and start > 0):
        raise ValueError(f"lr_find: start={start!r} must be a finite learning rate > 0")
    if not (isinstance(end, (int, float)) and math.isfinite(end) and end > start):
        raise ValueError(f"lr_find: end={end!r} must be a finite learning rate above start={start!r}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 2:
        raise ValueError(f"lr_find: steps={steps!r} must be a whole number >= 2")


def _check_reading(beta: float, diverge: float) -> None:
    if not (isinstance(beta, (int, float)) and 0 <= beta < 1):
        raise ValueError(f"lr_find: beta={beta!r} must be in [0, 1) (the moving average's memory)")
    if not (isinstance(diverge, (int, float)) and math.isfinite(diverge) and diverge > 1):
        raise ValueError(f"lr_find: diverge={diverge!r} must be a factor > 1 over the smoothed minimum")


def _batches(loader) -> Iterator:
    """The loader's batches, epoch after epoch (each pass sets the epoch-seeded sampler's epoch, as fit does)."""
    set_epoch = getattr(getattr(loader, "sampler", None), "set_epoch", None)
    epoch = 0
    while True:
        if set_epoch is not None:
            set_epoch(epoch)
        yield from loader
        epoch += 1


def steepest_descent(
    lrs: Sequence[float], smoothed: Sequence[float], losses: Sequence[float] | None = None, skip: float = 0.1
) -> float | None:
    """The learning rate where ``smoothed`` falls steepest against log(lr), among the points from the end of the
    noisy start (the first ``skip`` fraction) up to the smoothed minimum (the climb is left out).

    None, a test too short to say, when fewer than :data:`MIN_DESCENT` points lie there, or when the smoothed loss
    falls over them by no more than :data:`FALL_OVER_NOISE` times the scatter of one step's loss (estimated from
    ``losses``, each step's loss, by the spread of successive differences; None takes a noise-free curve)."""
    last = int(np.argmin(smoothed)) + 1
    first = int(len(lrs) * skip)
    if last - first < MIN_DESCENT:
        return None
    if losses is not None:
        scatter = float(np.std(np.diff(np.asarray(losses[:last])))) / math.sqrt(2)
        if smoothed[first] - smoothed[last - 1] <= FALL_OVER_NOISE * scatter:
            return None
    slopes = np.gradient(np.asarray(smoothed[first:last]), np.log(lrs[first:last]))
    return float(lrs[first + int(np.argmin(slopes))])


def read_range_test(steps: Iterable[tuple[float, float]], *, beta: float = 0.98, diverge: float = DIVERGE) -> LRFinding:
    """Read a range test from its ``(learning rate, loss)`` steps, taken one at a time: the loss smoothed by an
    exponential moving average (``beta``, bias-corrected), stopping (no further step is taken) once the smoothed
    loss exceeds ``diverge`` times its minimum or a loss is not finite, and the suggestion
    (:func:`steepest_descent`). :func:`lr_find` feeds it the steps it trains; a list of pairs reads a recorded test."""
    _check_reading(beta, diverge)
    found = LRFinding([], [], [], None, False, diverge)
    average, best = 0.0, math.inf
    for step, (lr, value) in enumerate(steps, start=1):
        if not math.isfinite(value):
            found = found._replace(diverged=True)
            break
        average = beta * average + (1 - beta) * value
        smoothed = average / (1 - beta**step)
        found.lrs.append(lr)
        found.losses.append(value)
        found.smoothed.append(smoothed)
        if smoothed > diverge * best:
            found = found._replace(diverged=True)
            break
        best = min(best, smoothed)
    return found._replace(suggestion=steepest_descent(found.lrs, found.smoothed, found.losses) if found.lrs else None)


def lr_find(
    config: TrainConfig | None = None,
    *,
    start: float = 1e-5,
    end: float = 10.0,
    steps: int = 100,
    beta: float = 0.98,
    diverge: float = DIVERGE,
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    train_loader=None,
) -> LRFinding:
    """Run the range test: ``steps`` steps at learning rates growing exponentially from ``start`` to ``end``, the
    loss smoothed by an exponential moving average (``beta``, bias-corrected), stopping once the smoothed loss
    exceeds ``diverge`` times its minimum or the loss is not finite (:func:`read_range_test`). The model's and
    optimizer's state (weights, batch-norm statistics, momentum, learning rates, train/eval mode) is restored bitwise
    afterwards.

    ``config=None`` takes :func:`profile`. ``model``/``optimizer`` default to fresh ones built from the config
    (after seeding with ``config.seed``, as :func:`fit` does); ``train_loader`` to the config's training batches.
    """
    _check_bounds(start, end, steps)
    _check_reading(beta, diverge)
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

    def trained_steps() -> Generator[tuple[float, float], None, None]:
        """Each step's learning rate and loss; its update is made when the reading asks for the next step."""
        batches = _batches(train_loader)
        for lr in lrs:
            for group in optimizer.param_groups:
                group["lr"] = lr
            images, labels = next(batches)
            images, labels = _to_device(images, labels, device, _is_channels_last(model))
            with _autocast(device, parts.amp_dtype):
                loss = parts.criterion(model(images), labels)
            yield lr, loss.item()
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    model.train()
    try:
        with contextlib.closing(trained_steps()) as trained:  # a stopped reading leaves no step half-taken
            return read_range_test(trained, beta=beta, diverge=diverge)
    finally:
        model.load_state_dict(saved_model)
        model.to(where, memory_format=torch.channels_last if channels_last else torch.contiguous_format)  # type: ignore[call-overload]
        model.train(was_training)
        if saved_optimizer is not None:
            optimizer.load_state_dict(saved_optimizer)
