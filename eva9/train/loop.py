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
    check_every_step = device.type != "cuda" if sync_every_step is None else sync_every_step
    model.train()
    # The loss is summed in float64, which MPS lacks: sum it on the CPU there (off CUDA the loop syncs every step).
    sum_device = torch.device("cpu") if device.type == "mps" else device
    loss_sum = torch.zeros((), dtype=torch.float64, device=sum_device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    first_bad = torch.full((), -1, dtype=torch.int64, device=device)
    seen = 0
    total = len(loader)
    where = f"epoch {epoch}, " if epoch is not None else ""

    def fail(step: int, value: float | str) -> None:
        lr = optimizer.param_groups[0]["lr"]
        raise NonFiniteLossError(
            f"training loss became {value} at {where}step {step} of {total} (lr {lr:.3g}); stopped. "
            "Lower the learning rate or check the inputs; the last good checkpoint is untouched",
            epoch=epoch,
            step=step,
        )

    def check() -> None:
        bad_step = int(first_bad)
        if bad_step >= 0:
            fail(bad_step, "NaN or infinite")  # the device kept only where, not which

    bar = None
    if progress:
        from tqdm import tqdm

        desc = f"epoch {epoch}" if epoch is not None else "train"
        bar = tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True, file=sys.stderr)
    try:
        for step, (images, labels) in enumerate(loader, start=1):
            # The step below appears in the book and keeps its lines within its page.
            # fmt: off
            # The training step begins here (the book's training chapter shows it).
            images, labels = _to_device(images, labels, device, channels_last)
            with _autocast(device, amp_dtype):  # bf16/fp16 on a GPU with amp, else float32
                logits = model(images)  # forward: ten scores (logits) per image
                loss = criterion(logits, labels)  # cross-entropy, the mean over the batch
            if check_every_step:  # stop before a NaN reaches the weights
                value = loss.item()
                if not math.isfinite(value):
                    fail(step, value)
            else:  # on a GPU: remember the first bad step without waiting for it
                finite = torch.isfinite(loss.detach())
                first_bad = torch.where((first_bad < 0) & ~finite, step, first_bad)
            optimizer.zero_grad(set_to_none=True)  # forget the last batch's gradients
            if scaler is not None:  # fp16: scale the loss so that small gradients survive
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()  # backward: d(loss)/d(weight) for every weight
                optimizer.step()  # SGD: a small step against the gradient
            if scheduler is not None:
                scheduler.step()  # the learning rate for the next step
            # The training step ends here.
            # fmt: on
            n = labels.size(0)
            loss_sum += loss.detach().to(sum_device).double() * n
            correct += (logits.detach().argmax(1) == labels).sum()
            seen += n
            if check_every_step or step % refresh_every == 0 or step == total:
                if not check_every_step:
                    check()
                if bar is not None:
                    bar.set_postfix(
                        loss=f"{loss_sum.item() / seen:.4f}", acc=f"{correct.item() / seen:.2%}", refresh=False
                    )
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if seen == 0:
        raise ValueError("the training loader yielded no batch; is batch_size larger than the dataset?")
    if not check_every_step:
        check()
    return loss_sum.item() / seen, correct.item() / seen
