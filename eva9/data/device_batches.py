"""Augmentation on the training device: the uint8 training set held as one tensor where the model trains, and
whole batches reflect-padded, cropped, flipped, cut out and normalised there with a few tensor operations.

The recipe is read from :func:`eva9.transforms.train_transforms` (:func:`augmentation_of`), so both paths apply the
same pad, crop, flip probability, hole size, hole probability and fill. Each image's draws (crop offset, flip,
whether it gets a hole and where) are a function of the augmentation seed :class:`~eva9.data.EpochSampler` gives it
for the epoch, that is of (seed, epoch, index) alone: a run is reproducible and resumable exactly as with the
workers. The draws themselves differ from Albumentations' (another generator), their distributions do not (tested).
In the style of Keller Jordan's airbench, but reproducible per image.
"""

from __future__ import annotations

from typing import NamedTuple

import albumentations as A
import numpy as np
import torch
import torch.nn.functional as F

from ..transforms import train_transforms
from ..utils import pick_device
from .loading import EpochSampler

__all__ = ["Augmentation", "Draws", "augmentation_of", "draws_from_seeds", "augment_batch", "DeviceBatches"]


class Augmentation(NamedTuple):
    """The train pipeline's numbers: padding, crop size, flip probability, hole size and probability, fill
    (0..255 per channel), normalisation mean and std (0..1 per channel)."""

    pad: int
    crop: int
    flip_p: float
    cutout_p: float
    cutout_size: int
    fill: tuple[float, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]


def augmentation_of(pipeline: A.Compose | None = None) -> Augmentation:
    """The numbers of ``pipeline`` (default :func:`~eva9.transforms.train_transforms`), checked to be its steps."""
    pipeline = train_transforms() if pipeline is None else pipeline
    steps = {type(step).__name__: step for step in pipeline.transforms}
    expected = ["Pad", "RandomCrop", "HorizontalFlip", "CoarseDropout", "Normalize", "ToTensorV2"]
    if [type(step).__name__ for step in pipeline.transforms] != expected:
        raise ValueError(f"the device path reproduces a pipeline of {expected}, not {list(steps)}")
    pad, crop, cut, norm = steps["Pad"], steps["RandomCrop"], steps["CoarseDropout"], steps["Normalize"]
    if not isinstance(pad.padding, int) or crop.height != crop.width or cut.num_holes_range != (1, 1):
        raise ValueError("the device path needs an int padding, a square crop and exactly one hole")
    if cut.hole_height_range[0] != cut.hole_height_range[1] or cut.hole_height_range != cut.hole_width_range:
        raise ValueError("the device path needs a square hole of one fixed size")
    return Augmentation(
        pad=pad.padding,
        crop=crop.height,
        flip_p=float(steps["HorizontalFlip"].p),
        cutout_p=float(cut.p),
        cutout_size=int(cut.hole_height_range[0]),
        fill=tuple(float(v) for v in cut.fill),
        mean=tuple(float(v) for v in norm.mean),
        std=tuple(float(v) for v in norm.std),
    )


class Draws(NamedTuple):
    """Per-image draws, each an int64 tensor [B]: crop offsets (row, column), flip (0/1), hole (0/1) and the hole's
    top-left corner (row, column)."""

    crop_y: torch.Tensor
    crop_x: torch.Tensor
    flip: torch.Tensor
    hole: torch.Tensor
    hole_y: torch.Tensor
    hole_x: torch.Tensor

    def to(self, device: torch.device) -> Draws:
        """The same draws on ``device``."""
        return Draws(*(t.to(device) for t in self))


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on a uint64 array (Steele et al. 2014), as :mod:`eva9.transforms` uses it."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def draws_from_seeds(seeds: np.ndarray | list[int], aug: Augmentation) -> Draws:
    """Each image's draws from its augmentation seed alone: six SplitMix64 outputs of the seed's stream, mapped to
    uniform integers by the top 32 bits (multiply-shift) and to Bernoulli draws by the top 53 bits."""
    state = np.asarray(seeds, dtype=np.int64).astype(np.uint64)
    outputs = []
    with np.errstate(over="ignore"):
        for _ in range(6):
            state = state + _GOLDEN
            outputs.append(_splitmix64(state))

    def integers(x: np.ndarray, count: int) -> torch.Tensor:  # uniform on 0..count-1
        return torch.from_numpy(((x >> np.uint64(32)) * np.uint64(count) >> np.uint64(32)).astype(np.int64))

    def bernoulli(x: np.ndarray, p: float) -> torch.Tensor:
        return torch.from_numpy(((x >> np.uint64(11)).astype(np.float64) * 2.0**-53 < p).astype(np.int64))

    offsets, corners = 2 * aug.pad + 1, aug.crop - aug.cutout_size + 1
    crop_y, crop_x, flip, hole, hole_y, hole_x = outputs
    return Draws(
        integers(crop_y, offsets),
        integers(crop_x, offsets),
        bernoulli(flip, aug.flip_p),
        bernoulli(hole, aug.cutout_p),
        integers(hole_y, corners),
        integers(hole_x, corners),
    )


def augment_batch(images: torch.Tensor, draws: Draws, aug: Augmentation) -> torch.Tensor:
    """Augment a uint8 NCHW batch as the train pipeline does, with the given draws: reflect-pad, crop, flip, cut
    out one hole of ``fill``, normalise; a float32 NCHW batch on the images' device."""
    device, size = images.device, aug.crop
    draws = draws.to(device)
    padded = F.pad(images.float(), (aug.pad,) * 4, mode="reflect")  # torch's "reflect" is OpenCV's REFLECT_101
    span = torch.arange(size, device=device)
    rows = draws.crop_y[:, None] + span  # [B, size]
    columns = draws.crop_x[:, None] + torch.where(draws.flip[:, None].bool(), size - 1 - span, span)
    batch = torch.arange(len(images), device=device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], columns[:, None, :]]  # [B, size, size, C]
    in_rows = (span >= draws.hole_y[:, None]) & (span < draws.hole_y[:, None] + aug.cutout_size)
    in_columns = (span >= draws.hole_x[:, None]) & (span < draws.hole_x[:, None] + aug.cutout_size)
    hole = (in_rows[:, :, None] & in_columns[:, None, :] & draws.hole.bool()[:, None, None])[..., None]
    out = torch.where(hole, torch.tensor(aug.fill, device=device), out)
    mean = torch.tensor(aug.mean, device=device) * 255.0
    scale = 1.0 / (torch.tensor(aug.std, device=device) * 255.0)  # Albumentations multiplies by 1 / (255 std) too
    return ((out - mean) * scale).permute(0, 3, 1, 2).contiguous()


class DeviceBatches:
    """The training batches of a uint8 image set kept on ``device`` and augmented there, batch by batch.

    Iterates like the workers' training loader: its :attr:`sampler` is an :class:`EpochSampler` (``fit`` sets its
    epoch), batches of ``batch_size`` with the last partial one dropped, each a (float32 images, int64 labels)
    pair on ``device``. With ``world_size`` > 1, as :func:`~eva9.data.loaders`: ``batch_size`` is the global batch
    and each batch is process ``rank``'s slice of it (:attr:`batch_size` is then that slice's size).
    """

    drop_last = True

    def __init__(
        self,
        images: np.ndarray,
        labels: list[int] | np.ndarray,
        *,
        batch_size: int,
        seed: int = 0,
        device: str | torch.device | None = None,
        augmentation: Augmentation | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"DeviceBatches needs uint8 NHWC images, not {images.dtype} of shape {images.shape}")
        if not 1 <= batch_size <= len(images):
            raise ValueError(f"batch_size must lie in 1..{len(images)} (the images), not {batch_size}")
        self.device = device if isinstance(device, torch.device) else pick_device(device)
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(self.device)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64).to(self.device)
        self.sampler = EpochSampler(len(images), seed, rank=rank, world_size=world_size, batch_size=batch_size)
        self.batch_size = int(batch_size) // world_size
        self.augmentation = augmentation_of() if augmentation is None else augmentation

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size

    def __iter__(self):
        pairs = np.asarray(list(self.sampler), dtype=np.int64)  # (index, seed) per image, this epoch's order
        draws = draws_from_seeds(pairs[:, 1], self.augmentation).to(self.device)
        order = torch.from_numpy(pairs[:, 0]).to(self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            take = slice(start, start + self.batch_size)
            index = order[take]
            batch_draws = Draws(*(t[take] for t in draws))
            yield augment_batch(self.images[index], batch_draws, self.augmentation), self.labels[index]
