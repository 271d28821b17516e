"""Albumentations pipelines for CIFAR-10: reflect-pad + random crop, flip, cutout, normalize; and their inverse.

Both pipelines take an HWC uint8 RGB image (``pipeline(image=img)["image"]``) and return a CHW float32 tensor.
They are written for Albumentations 2.x, whose argument names differ from 1.x: the old ``max_holes`` or
``fill_value`` would be ignored silently, so the tests check what each step does to pixels.
"""

from __future__ import annotations

import random
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

from .constants import MEAN, STD

__all__ = ["Pipeline", "Draw", "train_transforms", "test_transforms", "draw", "denormalize", "listing"]

_MASK64 = 2**64 - 1
_PCG_INCREMENT = 0xDA3E39CB94B95BDB_2D5A43A6F7D6B5A1 | 1  # any odd number: PCG64's stream constant


def _splitmix64(x: int) -> int:
    """One SplitMix64 step: spreads nearby integers (seeds 0, 1, 2, ...) far apart."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


class _SplitMix(random.Random):
    """``random.Random`` drawing from SplitMix64 (Steele et al. 2014), whose whole state is one integer: reseeding
    it costs a fraction of a microsecond, where the Mersenne Twister's 624-word seeding costs about 6 µs per image."""

    def seed(self, a=None, version: int = 2) -> None:  # noqa: D102 - random.Random's
        self._state = (random.getrandbits(64) if a is None else int(a)) & _MASK64

    def getstate(self):  # noqa: D102
        return self._state

    def setstate(self, state) -> None:  # noqa: D102
        self._state = state

    def _next(self) -> int:
        self._state = x = (self._state + 0x9E3779B97F4A7C15) & _MASK64
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
        return x ^ (x >> 31)

    def random(self) -> float:  # noqa: D102
        return (self._next() >> 11) * 2.0**-53

    def getrandbits(self, k: int) -> int:  # noqa: D102
        if k <= 64:
            return self._next() >> (64 - k)
        return int.from_bytes(
            b"".join(self._next().to_bytes(8, "little") for _ in range((k + 63) // 64)), "little"
        ) >> (-k % 64)


class Pipeline(A.Compose):
    """An Albumentations ``Compose`` whose steps draw in turn from one pair of random streams.

    ``A.Compose.set_random_seed(s)`` gives every step its own generators, all seeded with ``s``: the steps then
    repeat one another's draws (an image's flip equals "crop offset < 0.5" of the image before it). Here all steps
    share the Compose's Python and NumPy generators, so each decision is a fresh draw, and
    :meth:`set_random_seed` reseeds the two in place in a few microseconds (the Python one is SplitMix64, whose
    state is one integer): cheap enough for the loaders to reseed it for every image (see
    :class:`eva9.data.EpochSampler`).
    """

    def set_random_seed(self, seed: int | None) -> None:
        """Restart the shared streams from ``seed`` (None: fresh entropy)."""
        if not hasattr(self, "_streams"):
            self._streams = (np.random.Generator(np.random.PCG64()), _SplitMix())
        numpy_rng, python_rng = self._streams
        self.seed = seed
        if seed is None:
            numpy_rng.bit_generator.state = np.random.PCG64().state
            python_rng.seed()
        else:
            seed = int(seed)
            state = (_splitmix64(seed) << 64) | _splitmix64(seed ^ 0x5DEECE66D)
            numpy_rng.bit_generator.state = {
                "bit_generator": "PCG64",
                "state": {"state": state, "inc": _PCG_INCREMENT},
                "has_uint32": 0,
                "uinteger": 0,
            }
            python_rng.seed(seed)
        shared = getattr(self, "py_random", None) is python_rng and getattr(self, "random_generator", None) is numpy_rng
        if not shared:
            self.set_random_state(numpy_rng, python_rng)  # once: every step now draws from the shared pair


def train_transforms(
    pad: int = 4,
    crop: int = 32,
    flip_p: float = 0.5,
    cutout_p: float = 0.5,
    cutout_size: int = 16,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
) -> A.Compose:
    """Reflect-pad by ``pad`` and randomly crop ``crop``×``crop``, flip, cut out one mean-filled square, normalize.

    The cutout hole is filled with the dataset mean (in 0..255 pixel units, as it comes before Normalize), so
    after normalization the hole is about 0 in every channel.
    """
    if pad < 0 or crop < 1:
        raise ValueError(f"pad must be >= 0 and crop >= 1, got pad={pad}, crop={crop}")
    if not 1 <= cutout_size <= crop:
        raise ValueError(f"cutout_size must be between 1 and crop={crop}, not {cutout_size}")
    mean_pixel = tuple(int(round(255 * m)) for m in mean)
    return Pipeline(
        [
            # BORDER_REFLECT_101 is numpy/torchvision "reflect" (edge pixel not repeated); 2.x defaults to constant.
            A.Pad(padding=pad, border_mode=cv2.BORDER_REFLECT_101),
            A.RandomCrop(height=crop, width=crop),
            A.HorizontalFlip(p=flip_p),
            A.CoarseDropout(
                num_holes_range=(1, 1),
                hole_height_range=(cutout_size, cutout_size),
                hole_width_range=(cutout_size, cutout_size),
                fill=mean_pixel,
                p=cutout_p,
            ),
            A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0),
            ToTensorV2(),
        ]
    )


def test_transforms(mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> A.Compose:
    """Normalize and convert to a CHW float tensor; nothing random."""
    return Pipeline([A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0), ToTensorV2()])


@dataclass(frozen=True)
class Draw:
    """One pass of an image through a pipeline, and what its random steps did, as Albumentations recorded it."""

    image: torch.Tensor
    """What the pipeline returned."""
    shift: tuple[int, int]
    """(right, down): how many pixels the pad-and-crop moved the picture, before any flip; (0, 0) without a crop."""
    flipped: bool
    """Whether the horizontal flip was applied."""
    holes: tuple[tuple[int, int, int, int], ...]
    """Each hole cut out, as (x1, y1, x2, y2) in the returned image (x2 and y2 exclusive); empty when none was."""


def draw(pipeline: A.Compose, image: np.ndarray) -> Draw:
    """Apply ``pipeline`` to an H×W×3 uint8 ``image`` once and say what it did, from the parameters Albumentations
    reports for the steps it applied (``save_applied_params``), not from the pixels."""
    saved = pipeline.save_applied_params
    pipeline.save_applied_params = True
    try:
        out = pipeline(image=image)
    finally:
        pipeline.save_applied_params = saved
    applied: dict[str, dict] = {}
    for name, params in out["applied_transforms"]:
        if name in applied:
            raise ValueError(f"draw reads pipelines with at most one {name}; this one applied it twice")
        applied[name] = params
    pad, crop = applied.get("Pad", {}), applied.get("RandomCrop")
    shift = (0, 0)
    if crop is not None:
        x_min, y_min = crop["crop_coords"][:2]
        shift = (pad.get("pad_left", 0) - x_min, pad.get("pad_top", 0) - y_min)
    holes = applied.get("CoarseDropout", {}).get("holes", np.zeros((0, 4), int))
    return Draw(
        image=out["image"],
        shift=(int(shift[0]), int(shift[1])),
        flipped="HorizontalFlip" in applied,
        holes=tuple((int(x1), int(y1), int(x2), int(y2)) for x1, y1, x2, y2 in np.asarray(holes)),
    )


def denormalize(x: torch.Tensor, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> torch.Tensor:
    """Undo Normalize on a CHW or BCHW tensor: ``x * std + mean``, clamped to [0, 1] for display."""
    if x.ndim not in (3, 4) or x.shape[-3] != len(mean):
        raise ValueError(
            f"denormalize expects a CHW or BCHW tensor with {len(mean)} channels, got shape {tuple(x.shape)}"
        )
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x * s + m).clamp_(0, 1)


def listing(pipeline: A.Compose, width: int = 80) -> str:
    """The pipeline's steps, one per line as ``Name(arg=value, ...)``, wrapped at ``width`` characters."""
    if width < 20:
        raise ValueError(f"width must be at least 20 characters, got {width}")
    lines = []
    for step in pipeline:
        args = ", ".join(f"{key}={value}".replace(" ", "") for key, value in step.get_transform_init_args().items())
        lines.append(textwrap.fill(f"{type(step).__name__}({args})", width, subsequent_indent="  "))
    return "\n".join(lines)
