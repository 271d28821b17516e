"""Several processes training one run: torchrun's environment, the process group, ``DistributedDataParallel`` and
synchronised BatchNorm, as torchvision's ``references/classification`` does it (``init_distributed_mode``,
``model_without_ddp``, saving on the main process only). A thin layer under :func:`~eva9.train.fit`.

``torchrun --nproc-per-node N -m eva9 train ...`` starts N copies of one process; each reads its ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` from the environment torchrun sets (:func:`world`). Without torchrun, or with one
process, :func:`world` is rank 0 of 1 and nothing here does anything.

A recipe means the same at every world size: ``batch_size`` stays the global batch, each step every process trains
on its slice of the very batch one process would take (:class:`~eva9.data.EpochSampler`), DDP averages the
gradients of the slices' mean losses (equal slices: the gradient of the global batch's mean loss), BatchNorm's
batch statistics are the global batch's (:func:`sync_batchnorm`), and the test set is scored in shards whose
logits are summed into one tensor (:func:`predict_whole`), so every figure is the one-process figure up to the
order of floating-point sums.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Iterator
from typing import Any, Callable, NamedTuple, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from .config import TrainConfig
from .loop import Predictions, predict

__all__ = [
    "World",
    "world",
    "is_main_process",
    "StoppedWithMain",
    "GroupStopped",
    "peers_watched",
    "process_group",
    "from_main",
    "check_world",
    "device_for",
    "sync_batchnorm",
    "GroupBatchNorm2d",
    "wrap",
    "mean_over_ranks",
    "predict_whole",
]

T = TypeVar("T")


class World(NamedTuple):
    """Where this process stands: its ``rank`` among ``size`` processes, and ``local_rank`` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that owns the run folder, prints, and speaks for the group."""
        return self.rank == 0


def world() -> World:
    """This process's place in the group torchrun started (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); rank 0 of 1
    without torchrun."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return World()
    return World(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0")))


def is_main_process() -> bool:
    """Whether this is rank 0 (always, without torchrun)."""
    return world().is_main


class StoppedWithMain(SystemExit):
    """Raised on the other ranks when rank 0 refused to go on: rank 0 says why, these exit quietly (status 1)."""

    def __init__(self) -> None:
        super().__init__(1)


class GroupStopped(RuntimeError):
    """Another process of the group died, or torchrun stopped this one because of it; the message says what to do."""


def _lost_peer(error: RuntimeError) -> bool:
    """Whether ``error`` is a collective failing because a peer is gone (gloo reports a plain RuntimeError)."""
    text = str(error)
    return isinstance(error, dist.DistError) or any(
        sign in text for sign in ("gloo/transport", "Connection reset", "Connection closed", "NCCL")
    )


@contextlib.contextmanager
def peers_watched(group: World, finished: Callable[[], int], out: Any) -> Iterator[None]:
    """In a group, turn a peer's death (a failing collective) or torchrun's SIGTERM into :class:`GroupStopped`,
    which names the epochs ``out`` keeps and how to continue; alone, nothing."""
    if group.size == 1:
        yield
        return

    def message(why: str) -> str:
        epochs = finished()
        kept = f"{out} keeps the checkpoint of epoch {epochs}" if out is not None and epochs else "no epoch was saved"
        return (
            f"rank {group.rank} of {group.size}: {why}, so the group stopped; {kept}. Continue it with resume=True, at "
            "this or another world size (torchrun's report names the process that failed)"
        )

    def terminated(signum: int, frame: Any) -> None:
        raise GroupStopped(message("torchrun stopped this process (SIGTERM) after another one failed"))

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    except RuntimeError as error:
        if isinstance(error, GroupStopped) or not _lost_peer(error):
            raise
        gloo = re.sub(r"^\[[^\]]*\]\s*", "", str(error).splitlines()[0]).split(". ")[0]  # "[pair.cc:545] Read error..."
        raise GroupStopped(message(f"another process is gone ({gloo[:160]})")) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def process_group(group: World) -> Iterator[None]:
    """Join the group of ``group.size`` > 1 processes (gloo for CPU tensors, NCCL for CUDA ones where there is a
    GPU) for the block, unless one is already joined; leave it again afterwards if it was joined here. Alone,
    nothing."""
    if group.size == 1 or dist.is_initialized():
        yield
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(group.local_rank)
        dist.init_process_group("cpu:gloo,cuda:nccl")
    else:
        dist.init_process_group("gloo")
    yield
    dist.destroy_process_group()  # only after success: a failing process is ending anyway


def from_main(group: World, compute: Callable[[], T]) -> T:
    """``compute()`` run on rank 0 alone, and its result on every rank. An error on rank 0 is raised there and
    :class:`StoppedWithMain` on the others, so the group stops with one message."""
    if group.size == 1:
        return compute()
    payload: list[Any] = [None]
    if group.is_main:
        try:
            payload = [(True, compute())]
        except Exception as error:  # noqa: BLE001 - passed on, then raised again below
            payload = [(False, error)]
    dist.broadcast_object_list(payload, src=0)
    ok, value = payload[0]
    if ok:
        return value
    if group.is_main:
        raise value
    raise StoppedWithMain


def check_world(config: TrainConfig, group: World) -> None:
    """Refuse, in one line, a global batch that does not divide by the world size or a world size larger than
    the data (:func:`eva9.data.check_shardable`)."""
    if group.size > 1:
        from ..data import check_shardable

        test_size = 10_000 if config.test_per_class is None else 10 * config.test_per_class
        check_shardable(config.batch_size, group.size, config.train_size, test_size)


def device_for(group: World, device: torch.device) -> torch.device:
    """This process's device: GPU ``LOCAL_RANK`` when training on CUDA in a group, else ``device``."""
    if group.size > 1 and device.type == "cuda":
        return torch.device("cuda", group.local_rank)
    return device


class _SumOverRanks(torch.autograd.Function):
    """The sum of a tensor over the group's ranks, and its gradient (the sum of theirs), with ``all_reduce``."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        total = grad.contiguous().clone()
        dist.all_reduce(total)
        return total


class GroupBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training statistics are the whole global batch's: per-channel sums over the group's
    ranks (``all_reduce``, which autograd differentiates). torch's ``SyncBatchNorm`` does the same on GPUs only
    (its kernels are CUDA's); this serves the CPU. Alone or in eval mode it is ``BatchNorm2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims, shape = (0, 2, 3), (1, -1, 1, 1)
        sums = _SumOverRanks.apply(torch.cat([x.sum(dims), x.new_full((1,), x.numel() / x.size(1))]))
        count = sums[-1].detach()
        mean = sums[:-1] / count
        centred = x - mean.view(shape)
        var = _SumOverRanks.apply((centred * centred).sum(dims)) / count  # two passes, as precise as BatchNorm's
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                assert self.num_batches_tracked is not None
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                unbiased = var.detach() * (count / (count - 1))
                self.running_var.mul_(1 - factor).add_(unbiased, alpha=factor)
        return out


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with every BatchNorm computing its training statistics over the group's whole global batch: torch's
    ``SyncBatchNorm`` on CUDA, :class:`GroupBatchNorm2d` elsewhere. Same parameters, buffers and state_dict."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = GroupBatchNorm2d(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            for key, tensor in {**dict(child.named_parameters(recurse=False)), **dict(child.named_buffers())}.items():
                setattr(replacement, key, tensor)  # the very tensors (the optimizer's), not copies
            replacement.train(child.training)
            setattr(model, name, replacement)
        else:
            sync_batchnorm(child, device)
    return model


def wrap(model: nn.Module, device: torch.device, group: World) -> nn.Module:
    """``model`` in ``DistributedDataParallel`` (which starts every rank from rank 0's weights and averages the
    gradients after each backward) in a group; ``model`` itself alone. Keep ``model`` to save and evaluate."""
    if group.size == 1:
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def mean_over_ranks(group: World, *values: float) -> tuple[float, ...]:
    """The mean of each value over the ranks (each rank's mean over equal numbers of images: the global mean)."""
    if group.size == 1:
        return values
    total = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(total)
    return tuple((total / group.size).tolist())


def predict_whole(model: nn.Module, loader) -> Predictions:
    """:func:`~eva9.train.predict` over the whole test set: each rank scores its block (``loader.sampler``, a range
    of the test set), and the blocks' logits, put in place in one zero tensor per rank, are summed over the group:
    every rank holds the logits of a one-process evaluation. Alone, :func:`predict`."""
    preds = predict(model, loader)
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return preds
    rows = torch.as_tensor(list(loader.sampler))
    logits = preds.logits.new_zeros(len(loader.dataset), preds.logits.size(1))
    labels = preds.labels.new_zeros(len(loader.dataset))
    logits[rows], labels[rows] = preds.logits, preds.labels
    dist.all_reduce(logits)  # each row is non-zero on one rank only: the sum is exact
    dist.all_reduce(labels)
    return Predictions(logits, logits.argmax(1), labels)
