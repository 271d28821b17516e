"""CIFAR-10: classes, channel statistics, datasets and loaders.

Every copy of CIFAR-10 ends up as the same thing: a :class:`CIFAR10Dataset` holding uint8 HWC RGB images and
integer labels. Images come from one of two sources:

* a local copy named by ``root=`` or the ``EVA9_DATA_DIR`` environment variable, in either layout
  (torchvision's ``cifar-10-batches-py/`` folder, or an image-folder tree ``train/<class>/*.png|jpg``,
  ``test/<class>/*``); image files are decoded on first use and cached, so a small subset decodes only itself;
* otherwise the official archive, downloaded by torchvision into ``./data`` on first use.

The package in four modules: :mod:`eva9.data.datasets` (finding and reading a copy, the dataset class) and
:mod:`eva9.data.loading` (subsets, statistics, the sampler, the loaders), :mod:`eva9.data.batches` (the
pickled batch files, read without trusting them), and :mod:`eva9.data.device_batches` (the
training set on the training device, augmented there in whole batches); every name is importable from here.
"""

from __future__ import annotations

from ..constants import CLASSES, MEAN, STD
from .datasets import DOWNLOAD_DIR, ENV_VAR, CIFAR10Dataset, CIFAR10Error, ImageFiles, cifar10, copy_kind, dataset_root
from .device_batches import Augmentation, DeviceBatches, augment_batch, augmentation_of, draws_from_seeds
from .loading import (
    EpochSampler,
    channel_stats,
    check_shardable,
    default_workers,
    jpeg_copy,
    loaders,
    per_class_subset,
    pixel_difference,
    shard_of,
    test_loader,
)

__all__ = [
    "CLASSES",
    "MEAN",
    "STD",
    "ENV_VAR",
    "DOWNLOAD_DIR",
    "CIFAR10Error",
    "CIFAR10Dataset",
    "ImageFiles",
    "dataset_root",
    "copy_kind",
    "cifar10",
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
    "Augmentation",
    "DeviceBatches",
    "augment_batch",
    "augmentation_of",
    "draws_from_seeds",
]
