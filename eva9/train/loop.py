"""One epoch of training and the evaluation beside it: :func:`train_one_epoch` (the training step the book shows),
:func:`predict` and :func:`evaluate`, and the device, memory-format and autocast helpers they share.

Written in the style of torchvision's ``references/classification/train.py``: one explicit loop per epoch,
evaluation separate. Nothing here knows about run folders (:mod:`eva9.train.runs`).
"""

from __future__ import annotations

import math
import sys
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NonFiniteLossError", "Predictions", "predict", "evaluate", "train_one_epoch"]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the epoch and step."""

    def __init__(self, message: str, epoch: int | None = None, step: int | None = None) -> None:
        super().__init__(message)
        self.epoch, self.step = epoch, step


# ---------------------------------------------------------------------------------------------------------- evaluation


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


def _is_channels_last(model: nn.Module) -> bool:
    """Whether the model's first 4-D weight (its stem convolution) is stored channels-last."""
    for tensor in model.parameters():
        if tensor.dim() == 4:
            return tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous()
    return False


def _to_device(images: torch.Tensor, labels: torch.Tensor, device: torch.device, channels_last: bool = False):
    """Move a batch to ``device``; images channels-last when the model is (so no layer converts them)."""
    non_blocking = device.type == "cuda"
    if channels_last and images.dim() == 4:
        images = images.to(device, non_blocking=non_blocking, memory_format=torch.channels_last)
    else:
        images = images.to(device, non_blocking=non_blocking)
    return images, labels.to(device, non_blocking=non_blocking)


@torch.no_grad()
def predict(model: nn.Module, loader, *, amp_dtype: torch.dtype | None = None, tta: bool = False) -> Predictions:
    """Logits, predictions and labels for every sample of ``loader``, in loader order, on the CPU.

    The model runs in eval mode on its own device; its previous train/eval mode is restored afterwards.
    ``tta=True`` adds flip test-time augmentation: the logits are the mean of the image's and its mirror image's.
    """
    device = _model_device(model)
    channels_last = _is_channels_last(model)
    was_training = model.training
    model.eval()
    logits_all, labels_all = [], []
    try:
        for images, labels in loader:
            images, _ = _to_device(images, labels, device, channels_last)
            with _autocast(device, amp_dtype):
                logits = model(images)
                if tta:
                    logits = (logits.float() + model(images.flip(-1)).float()) / 2
            logits_all.append(logits.float().cpu())
            labels_all.append(torch.as_tensor(labels).long().cpu())
    finally:
        model.train(was_training)
    if not logits_all:
        raise ValueError("predict() got an empty loader")
    logits = torch.cat(logits_all)
    return Predictions(logits, logits.argmax(1), torch.cat(labels_all))


def evaluate(
    model: nn.Module,
    loader,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    *,
    amp_dtype: torch.dtype | None = None,
    tta: bool = False,
) -> tuple[float, float]:
    """Mean loss (cross-entropy unless ``criterion``, a mean-reducing loss, is given) and accuracy in [0, 1].

    ``tta=True`` scores the mean logits of each image and its mirror image (see :func:`predict`).
    """
    out = predict(model, loader, amp_dtype=amp_dtype, tta=tta)
    return _loss_and_accuracy(out, criterion)


def _loss_and_accuracy(out: Predictions, criterion=None) -> tuple[float, float]:
    criterion = criterion if criterion is not None else F.cross_entropy
    with torch.no_grad():
        loss = float(criterion(out.logits, out.labels))
    return loss, float((out.preds == out.labels).double().mean())


# --------------------------------------------------------------------------------------------------------------- epoch


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    try:
        return shell is not None and shell.get_ipython() is not None and "IPKernelApp" in shell.get_ipython().config
    except Exception:  # noqa: BLE001 - any IPython oddity just means "not a notebook"
        return False


def _want_progress(progress: bool | None) -> bool:
    """None = automatic: bars on a terminal or in a notebook, none in logs and pipes."""
    if progress is not None:
        return bool(progress)
    return _in_notebook() or (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())


class _FiniteLossGuard:
    """Stops training at the first NaN or infinite loss, naming the epoch and step: off CUDA at once (``.item()`` is
    free there, so the bad step never updates the weights); on a GPU it remembers the first bad step on the device
    and reads it only at :meth:`settle` (every few steps and at the end), so the queue never waits for it."""

    def __init__(self, optimizer, device: torch.device, total: int, epoch: int | None, every_step: bool) -> None:
        self.optimizer, self.total, self.epoch, self.every_step = optimizer, total, epoch, every_step
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)

    def fail(self, step: int, value: float | str) -> None:
        """Raise :class:`NonFiniteLossError` for ``step``."""
        where = f"epoch {self.epoch}, " if self.epoch is not None else ""
        lr = self.optimizer.param_groups[0]["lr"]
        raise NonFiniteLossError(
            f"training loss became {value} at {where}step {step} of {self.total} (lr {lr:.3g}); stopped. "
            "Lower the learning rate or check the inputs; the last good checkpoint is untouched",
            epoch=self.epoch,
            step=step,
        )

    def check(self, loss: torch.Tensor, step: int) -> None:
        """Off CUDA: fail now if ``loss`` is not finite. On a GPU: note the step, without waiting."""
        if self.every_step:
            value = loss.item()
            if not math.isfinite(value):
                self.fail(step, value)
        else:
            finite = torch.isfinite(loss.detach())
            self.first_bad = torch.where((self.first_bad < 0) & ~finite, step, self.first_bad)

    def settle(self) -> None:
        """Fail if a step noted on the device was bad (the device kept only where, not which value)."""
        if not self.every_step and int(self.first_bad) >= 0:
            self.fail(int(self.first_bad), "NaN or infinite")


class _EpochTally:
    """The epoch's loss and correct count summed on the device, and its progress bar (None = none)."""

    def __init__(self, device: torch.device, total: int, epoch: int | None, progress: bool | None) -> None:
        # The loss is summed in float64, which MPS lacks: sum it on the CPU there (off CUDA the loop syncs every step).
        self.sum_device = torch.device("cpu") if device.type == "mps" else device
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.sum_device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.seen = 0
        self.bar = None
        if progress:
            from tqdm import tqdm

            desc = f"epoch {epoch}" if epoch is not None else "train"
            self.bar = tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True, file=sys.stderr)

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Count one batch (no device synchronisation)."""
        n = labels.size(0)
        self.loss_sum += loss.detach().to(self.sum_device).double() * n
        self.correct += (logits.detach().argmax(1) == labels).sum()
        self.seen += n

    def show(self) -> None:
        """Write the running loss and accuracy on the bar (this reads the sums: a synchronisation)."""
        if self.bar is not None:
            loss, accuracy = self.means()
            self.bar.set_postfix(loss=f"{loss:.4f}", acc=f"{accuracy:.2%}", refresh=False)

    def means(self) -> tuple[float, float]:
        """Mean loss and accuracy over the samples counted so far."""
        return self.loss_sum.item() / self.seen, self.correct.item() / self.seen

    def close(self) -> None:
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()


def _disabled_scaler():
    """A GradScaler that does nothing: scale() returns the loss, step() calls optimizer.step(), update() passes."""
    try:
        return torch.amp.GradScaler("cuda", enabled=False)
    except (AttributeError, TypeError):  # torch < 2.3
        return torch.cuda.amp.GradScaler(enabled=False)


def train_one_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    device: torch.device | str,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: Any | None = None,
    amp_dtype: torch.dtype | None = None,
    progress: bool | None = False,
    *,
    epoch: int | None = None,
    refresh_every: int = 25,
    sync_every_step: bool | None = None,
) -> tuple[float, float]:
    """Train for one pass over ``loader``; return the mean training loss and accuracy over its samples.

    ``scheduler`` steps after every batch (one-cycle and cosine are per-step schedules). Loss and correct counts are
    summed on the device, so on a GPU the loop synchronises only every ``refresh_every`` steps (to update the
    progress bar and check the loss) and at the end (an fp16 GradScaler still reads its overflow flag every step);
    off CUDA, where reading a value is cheap, every step. A NaN or infinite loss raises
    :class:`NonFiniteLossError` naming the epoch and the first bad step (off CUDA at once, before the bad step
    updates the weights).
    ``sync_every_step`` overrides that choice (None = only off CUDA).
    """
    device = torch.device(device)
    channels_last = _is_channels_last(model)
    # .item() is free on the CPU, so stop before any bad update; on a GPU it would stall the queue every step.
    every_step = device.type != "cuda" if sync_every_step is None else sync_every_step
    total = len(loader)
    guard = _FiniteLossGuard(optimizer, device, total, epoch, every_step)
    tally = _EpochTally(device, total, epoch, progress)
    scaler = scaler if scaler is not None else _disabled_scaler()
    model.train()
    try:
        for step, (images, labels) in enumerate(loader, start=1):
            # fmt: off
            # The training step begins here (the book's training chapter shows it).
            images, labels = _to_device(images, labels, device, channels_last)
            with _autocast(device, amp_dtype):  # bf16/fp16 on a GPU with amp, else float32
                logits = model(images)  # forward: ten scores (logits) per image
                loss = criterion(logits, labels)  # cross-entropy, the mean over the batch
            guard.check(loss, step)  # stop before a NaN or infinite loss reaches the weights
            optimizer.zero_grad(set_to_none=True)  # forget the last batch's gradients
            scaler.scale(loss).backward()  # backward: d(loss)/d(weight) for every weight
            scaler.step(optimizer)  # SGD: a small step against the gradient
            scaler.update()  # fp16 only: adapt the loss scale
            if scheduler is not None:
                scheduler.step()  # the learning rate for the next step
            # The training step ends here.
            # fmt: on
            tally.add(loss, logits, labels)
            if every_step or step % refresh_every == 0 or step == total:
                guard.settle()
                tally.show()
            if tally.bar is not None:
                tally.bar.update(1)
    finally:
        tally.close()
    if tally.seen == 0:
        raise ValueError("the training loader yielded no batch; is batch_size larger than the dataset?")
    guard.settle()
    return tally.means()
