"""What :func:`~eva9.train.fit` trains a model with: the loaders, the loss, SGD, the learning-rate schedule, mixed
precision (bf16 or fp16 with a GradScaler on CUDA) and the channels-last memory format."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from .config import TrainConfig

__all__ = ["CHANNELS_LAST_ON_CPU"]

CHANNELS_LAST_ON_CPU = True
"""Whether ``channels_last=None`` (auto) trains channels-last on the CPU too, as it always does on CUDA.

Measured by ``benchmarks/bench_engine.py`` (``benchmarks/results/engine.json``): on this project's 2-core CPU one
ResNet18 training step of 128 ran 1.14× faster channels-last (17.3 against 14.5 images/s, 8 interleaved rounds,
2 torch threads; the issue's own A/B gave 1.26×). Other CPUs may differ: set ``TrainConfig.channels_last``."""


def _loaders(config: TrainConfig, device: torch.device, rank: int = 0, world_size: int = 1):
    """The training and test loaders of ``config``: its data folder, batch size, workers, subsets, seed and where
    it augments (``augment_on="device"``: :class:`~eva9.data.device_batches.DeviceBatches`); with ``world_size``
    > 1, process ``rank``'s slices of them (:func:`eva9.data.loaders`)."""
    from ..data import loaders  # Albumentations loads only when a run needs data

    train, test = loaders(
        config.data_dir,
        batch_size=config.batch_size,
        workers=config.workers,
        train_per_class=config.train_per_class,
        test_per_class=config.test_per_class,
        seed=config.seed,
        device=device,
        rank=rank,
        world_size=world_size,
    )
    if config.augment_on == "device":  # the same images, held on the device and augmented there
        from ..data.device_batches import DeviceBatches

        subset: Any = train.dataset  # the loaders' own stratified subset, as a CIFAR10Dataset
        images, labels = subset.uint8_images(), subset.targets
        batches = DeviceBatches(
            images, labels, batch_size=config.batch_size, seed=config.seed, device=device, rank=rank,
            world_size=world_size,
        )  # fmt: skip
        return batches, test
    return train, test


def _amp_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    if not amp or device.type != "cuda":
        return None
    # bf16 where the tensor cores run it (compute capability 8+: A100, L4, H100). torch.cuda.is_bf16_supported() also
    # says yes where bf16 is only emulated (a T4, Colab's usual GPU), which is slower than fp16 with a GradScaler.
    return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16


def _grad_scaler(amp_dtype: torch.dtype | None):
    if amp_dtype != torch.float16:
        return None
    try:
        return torch.amp.GradScaler("cuda")
    except (AttributeError, TypeError):  # torch < 2.3
        return torch.cuda.amp.GradScaler()


def _make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle":
        # OneCycleLR divides by zero when a phase is shorter than one step (tiny smoke runs): keep both phases > 1 step.
        # A single step has no cycle at all: it runs at the peak lr.
        if total == 1:
            return None
        warmup = min(max(config.warmup, 1.5 / total), 1 - 0.5 / total)
        # cycle_momentum=False: OneCycleLR would otherwise cycle momentum 0.85-0.95 and ignore config.momentum.
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=config.lr,
            total_steps=total,
            pct_start=warmup,
            div_factor=25.0,
            final_div_factor=1e4,
            cycle_momentum=False,
        )
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    return None


def _wants_channels_last(config: TrainConfig, device: torch.device) -> bool:
    """``config.channels_last``, or automatically: on CUDA, and on the CPU as :data:`CHANNELS_LAST_ON_CPU` says."""
    if config.channels_last is not None:
        return config.channels_last
    return device.type == "cuda" or (device.type == "cpu" and CHANNELS_LAST_ON_CPU)


class _TrainingParts(NamedTuple):
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    amp_dtype: torch.dtype | None
    scaler: Any


def _training_parts(
    model: nn.Module, config: TrainConfig, device: torch.device, steps_per_epoch: int
) -> _TrainingParts:
    """Move ``model`` to ``device`` (channels-last where :func:`_wants_channels_last`) and build what :func:`fit`
    trains it with."""
    model.to(device)
    if _wants_channels_last(config, device):
        model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if config.compile:
        model.compile()  # in place: the state_dict keeps its names, so checkpoints and model.pt are unchanged
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov,
        weight_decay=config.weight_decay,
    )
    amp_dtype = _amp_dtype(device, config.amp)
    return _TrainingParts(
        criterion, optimizer, _make_scheduler(config, optimizer, steps_per_epoch), amp_dtype, _grad_scaler(amp_dtype)
    )
