"""From a dataset to batches: stratified subsets, channel statistics, the epoch-seeded sampler, worker counts
and the train and test DataLoaders."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Callable, cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from ..transforms import test_transforms, train_transforms
from ..utils import pick_device
from .datasets import CIFAR10Dataset, cifar10, dataset_root

__all__ = [
    "channel_stats",
    "jpeg_copy",
    "pixel_difference",
    "per_class_subset",
    "default_workers",
    "EpochSampler",
    "check_shardable",
    "shard_of",
    "loaders",
    "test_loader",
]


# ------------------------------------------------------------------------------------------- statistics, subsets


def channel_stats(dataset: Dataset, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) over all pixels of an un-normalized dataset whose items are [0, 1] CHW tensors.

    A :class:`CIFAR10Dataset` without a transform is read straight from its uint8 images; any other dataset is
    iterated item by item.
    """
    total = squares = None
    count = 0
    if isinstance(dataset, CIFAR10Dataset) and dataset.transform is None:
        images = dataset.uint8_images()
        for start in range(0, len(images), chunk):
            pixels = images[start : start + chunk].reshape(-1, images.shape[-1]).astype(np.int64)
            part, part_sq = pixels.sum(0), (pixels * pixels).sum(0)
            total = part if total is None else total + part
            squares = part_sq if squares is None else squares + part_sq
            count += len(pixels)
        scale = 255.0
    else:
        for item in dataset:  # type: ignore[attr-defined]  # a map-style dataset iterates by index
            x = (item[0] if isinstance(item, (tuple, list)) else item).double().flatten(1)
            part, part_sq = x.sum(1).numpy(), (x * x).sum(1).numpy()
            total = part if total is None else total + part
            squares = part_sq if squares is None else squares + part_sq
            count += x.shape[1]
        scale = 1.0
    if total is None or squares is None or count == 0:
        raise ValueError("channel_stats needs a non-empty dataset")
    mean = total / count
    var = np.maximum(squares / count - mean * mean, 0.0)
    return tuple(float(m / scale) for m in mean), tuple(float(np.sqrt(v) / scale) for v in var)


def per_class_subset(dataset: Dataset, n_per_class: int, seed: int = 0) -> Dataset:
    """``n_per_class`` items of every class, drawn without replacement; the same seed gives the same items.

    The items keep the dataset's order. A :class:`CIFAR10Dataset` gives a CIFAR10Dataset (no image decoded);
    any other dataset with ``.targets`` gives a ``torch.utils.data.Subset`` with ``.targets``.
    """
    if int(n_per_class) != n_per_class or n_per_class < 1:
        raise ValueError(f"n_per_class must be a positive integer, not {n_per_class!r}")
    targets = getattr(dataset, "targets", None)
    if targets is None:
        raise ValueError("per_class_subset needs a dataset with a .targets list of labels")
    targets = np.asarray(targets)
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(targets):
        members = np.flatnonzero(targets == label)
        if n_per_class > len(members):
            raise ValueError(
                f"n_per_class={n_per_class} but class {label} has only {len(members)} items in this dataset"
            )
        chosen.append(rng.choice(members, size=int(n_per_class), replace=False))
    indices = np.sort(np.concatenate(chosen)).tolist()
    if isinstance(dataset, CIFAR10Dataset):
        return dataset.subset(indices)
    subset = Subset(dataset, indices)
    subset.targets = [int(targets[i]) for i in indices]  # type: ignore[attr-defined]
    return subset


def jpeg_copy(dataset: CIFAR10Dataset, quality: int = 75) -> CIFAR10Dataset:
    """The dataset's images re-encoded as JPEG at ``quality`` by Pillow (colour at half resolution, Pillow's
    default), with the same labels and transform."""
    import io

    from PIL import Image

    if not 1 <= quality <= 95:
        raise ValueError(f"quality must lie in 1..95 (Pillow's useful range), not {quality!r}")
    images = dataset.uint8_images()
    encoded = np.empty_like(images)
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        with Image.open(buffer, formats=["JPEG"]) as decoded:
            encoded[i] = np.asarray(decoded.convert("RGB"))
    return CIFAR10Dataset(encoded, dataset.targets, dataset.transform, dataset.classes, dataset.root, dataset.split)


def pixel_difference(first: CIFAR10Dataset, second: CIFAR10Dataset) -> float:
    """Mean absolute difference between the two datasets' images, in grey levels (0..255) per pixel and channel."""
    a, b = first.uint8_images(), second.uint8_images()
    if a.shape != b.shape:
        raise ValueError(f"the datasets hold images of different shapes: {a.shape} and {b.shape}")
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# --------------------------------------------------------------------------------------------------- loaders


def _usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no sched_getaffinity
        return os.cpu_count() or 1


def default_workers() -> int:
    """Loader worker processes by default: one per usable core but one, kept for the training process; at most 32.

    A GPU consumes augmented images faster than a core makes them (about 3,000 images/s per worker with eva9's
    Albumentations pipeline), so the loader takes every core the training loop does not need: 15 workers on a
    16-core GPU machine, 1 on a 2-core one. 32 is more than one GPU needs; more would only cost memory and start-up.
    Under torchrun the cores are shared among the training processes it started on this machine
    (``LOCAL_WORLD_SIZE``): 8 processes on 16 cores take 1 worker each.
    """
    local = os.environ.get("LOCAL_WORLD_SIZE", "")
    processes = int(local) if local.isdigit() and int(local) > 0 else 1
    return max(1, min(32, _usable_cores() // processes - 1))


def _seed_worker(worker_id: int) -> None:
    """Seed a loader worker's global Python and NumPy RNGs from its torch seed (base seed + worker id).

    eva9's own augmentation does not use them: :class:`EpochSampler` seeds every image. This only keeps a custom
    transform that draws from the global RNGs from repeating the same draws in every worker.
    """
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


class EpochSampler(Sampler):
    """Shuffles like ``DistributedSampler.set_epoch``: each pass's order and each image's augmentation seed are a
    function of (seed, epoch, index) alone.

    It yields ``(index, augmentation seed)`` pairs, which :class:`CIFAR10Dataset` answers by reseeding its
    transform before augmenting the image. So neither the number of loader workers nor resuming a run in a new
    process changes a single pixel of any batch. Every pass advances the epoch by one; call :meth:`set_epoch`
    before iterating to choose it (``fit`` does, so a resumed run continues at the right epoch).

    With ``world_size`` > 1 (one of several processes training together, see :mod:`eva9.train.distributed`) it
    yields only process ``rank``'s part of each whole global batch of ``batch_size``: the one-process order cut
    into global batches, each cut into ``world_size`` equal consecutive slices. Batches of
    ``batch_size // world_size`` drawn from it are, step by step, this process's slice of the very batch a
    one-process run takes, with the same augmentation seeds; the last partial global batch is dropped.
    """

    def __init__(
        self, size: int, seed: int = 0, *, rank: int = 0, world_size: int = 1, batch_size: int | None = None
    ) -> None:
        if size < 1:
            raise ValueError(f"EpochSampler needs at least one item, not {size}")
        if world_size > 1:
            check_shardable(batch_size or 0, world_size, size)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in 0..{world_size - 1}, not {rank}")
        self.size, self.seed, self.epoch = int(size), int(seed), 0
        self.rank, self.world_size, self.batch_size = int(rank), int(world_size), int(batch_size or 0)

    def set_epoch(self, epoch: int) -> None:
        """The epoch (0-based) the next pass draws its order and seeds for."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.world_size == 1:
            return self.size
        return self.size // self.batch_size * self.batch_size // self.world_size

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = rng.permutation(self.size)
        seeds = rng.integers(0, 2**63 - 1, size=self.size)  # seeds[i]: the augmentation seed of item i this epoch
        if self.world_size > 1:  # [steps, world_size, slice]: this rank's slice of every whole global batch
            steps = self.size // self.batch_size
            order = order[: steps * self.batch_size].reshape(steps, self.world_size, -1)[:, self.rank].reshape(-1)
        return iter(list(zip(order.tolist(), seeds[order].tolist())))


def check_shardable(batch_size: int, world_size: int, train_size: int, test_size: int | None = None) -> None:
    """Refuse, in one line, a global batch that does not divide by the world size or a world size larger than the
    data (each process needs a slice of every batch and a share of the test images)."""
    for what, size in (("training set", train_size), ("test set", test_size)):
        if size is not None and world_size > size:
            raise ValueError(
                f"world size {world_size} is larger than the {what} ({size} images): every process needs some of "
                "it. Start fewer processes (torchrun --nproc-per-node) or use more images"
            )
    if batch_size < 1 or batch_size % world_size:
        raise ValueError(
            f"batch_size={batch_size} does not divide by the world size {world_size}: each of the {world_size} "
            "processes takes an equal slice of every global batch. Choose a multiple of "
            f"{world_size} or start another number of processes"
        )


def shard_of(size: int, rank: int, world_size: int) -> range:
    """The items ``rank`` of ``world_size`` processes evaluates: a contiguous block (sizes differ by at most one)."""
    return range(rank * size // world_size, (rank + 1) * size // world_size)


def _loader_options(batch_size: int, workers: int | None, device: str | torch.device | None) -> dict[str, Any]:
    """DataLoader keyword arguments shared by the train and test loaders."""
    if workers is None:
        workers = default_workers()
    if workers < 0:
        raise ValueError(f"workers must be >= 0, not {workers}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    device = device if isinstance(device, torch.device) else pick_device(device)
    return dict(
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        worker_init_fn=_seed_worker if workers > 0 else None,
    )


def _test_set(path: Path | None, transform, per_class: int | None, seed: int, download: bool | None) -> CIFAR10Dataset:
    test = cifar10("test", path, download=download)
    if per_class is not None:
        test = cast(CIFAR10Dataset, per_class_subset(test, per_class, seed))  # a CIFAR10Dataset gives one
    test.transform = test_transforms() if transform is None else transform
    test.load_images()
    return test


def test_loader(
    root: str | os.PathLike | None = None,
    *,
    batch_size: int = 128,
    workers: int | None = None,
    transform: Callable[..., Any] | None = None,
    per_class: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    download: bool | None = None,
) -> DataLoader:
    """The test split in order, test-transformed: the loader :func:`loaders` gives with the same arguments.

    ``per_class`` takes the same stratified subset (seeded with ``seed``) as ``loaders(test_per_class=...)``, so a
    run's test images can be rebuilt from its config alone.
    """
    options = _loader_options(batch_size, workers, device)
    test = _test_set(dataset_root(root), transform, per_class, seed, download)
    return DataLoader(test, shuffle=False, drop_last=False, generator=torch.Generator().manual_seed(seed), **options)


def loaders(
    root: str | os.PathLike | None = None,
    *,
    batch_size: int = 128,
    workers: int | None = None,
    train_transform: Callable[..., Any] | None = None,
    test_transform: Callable[..., Any] | None = None,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    download: bool | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[DataLoader, DataLoader]:
    """Train and test DataLoaders: train shuffled (seeded) with drop_last, test in order.

    Transforms default to :func:`eva9.transforms.train_transforms` / ``test_transforms``. ``*_per_class`` take a
    stratified subset (seeded with ``seed``). The train loader draws from an :class:`EpochSampler`: the same seed
    gives the same batches, augmentation included, pixel for pixel, whatever the number of workers; pass ``n``
    over the loader is epoch ``n`` (0-based) unless ``train_loader.sampler.set_epoch`` chooses another.

    ``world_size`` > 1: the loaders of process ``rank`` of a group training together. ``batch_size`` stays the
    global batch: each training batch is this process's ``batch_size // world_size`` slice of the one-process
    batch (:class:`EpochSampler`), and the test loader holds its block of the test set (:func:`shard_of`, its
    ``sampler``); both keep the whole datasets as ``.dataset``.
    """
    options = _loader_options(batch_size, workers, device)
    path = dataset_root(root)
    train = cifar10("train", path, download=download)
    if train_per_class is not None:
        train = cast(CIFAR10Dataset, per_class_subset(train, train_per_class, seed))
    if world_size > 1:
        check_shardable(batch_size, world_size, len(train))
    if batch_size > len(train):
        raise ValueError(
            f"batch_size={batch_size} is larger than the training set ({len(train)} images"
            + (f", train_per_class={train_per_class}" if train_per_class is not None else "")
            + "); with drop_last=True no batch would be drawn. Lower batch_size or raise train_per_class."
        )
    train.transform = train_transforms() if train_transform is None else train_transform
    # Decode image files once, here, so that workers share the array instead of re-decoding every epoch.
    train.load_images()
    test = _test_set(path, test_transform, test_per_class, seed, download)
    if world_size > 1:
        check_shardable(batch_size, world_size, len(train), len(test))

    train_loader = DataLoader(
        train,
        sampler=EpochSampler(len(train), seed, rank=rank, world_size=world_size, batch_size=batch_size),
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
        **{**options, "batch_size": batch_size // world_size},
    )
    test_loader = DataLoader(
        test,
        sampler=shard_of(len(test), rank, world_size),  # in order: all of it in one process
        drop_last=False,
        generator=torch.Generator().manual_seed(seed),
        **options,
    )
    return train_loader, test_loader
