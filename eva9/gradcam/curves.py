"""Deletion and insertion curves (Petsiuk et al., 2018, "RISE"), and the two maps every method must beat.

A map ranks the pixels. The deletion curve replaces them with a baseline in that order, most important first, in
``steps`` equal steps, and records the target class's probability after each step; a faithful map makes it fall
fast, so a *small* area under the curve is good. The insertion curve starts from the baseline and puts the
original pixels back in the same order; a faithful map makes it rise fast, so a *large* area is good.

Baselines, as RISE uses them: deletion replaces pixels with the training set's mean colour (0 in normalised space,
as :func:`eva9.gradcam.deletion_test` blanks them); insertion starts from the image blurred by a Gaussian
(σ = 2 pixels on 32×32 images, :func:`blurred`), which keeps the colours but removes the shapes. Either curve
takes either baseline (``baseline="mean"`` or ``"blur"``). Tied map values (an empty map is all ties) are taken
in row order, as :func:`eva9.gradcam.top_pixel_mask` takes them.

The maps to beat: :func:`random_map` (uniform noise: any map that knows something beats it) and :func:`edge_map`
(the Sobel gradient magnitude of the image: a map that knows only where the image has edges).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from eva9.cam import _target_tensor
from eva9.transforms import denormalize

from .checks import _probabilities

__all__ = ["FaithfulnessCurve", "blurred", "deletion_curve", "edge_map", "insertion_curve", "random_map"]

BLUR_SIGMA = 2.0
"""The σ, in pixels, of the insertion curve's blurred baseline."""


class FaithfulnessCurve(NamedTuple):
    """The target class's probability (B, steps + 1) at each fraction (steps + 1,) of pixels deleted or inserted."""

    kind: str
    fractions: torch.Tensor
    probabilities: torch.Tensor
    targets: torch.Tensor

    @property
    def areas(self) -> torch.Tensor:
        """Each image's area under the curve (B,), by the trapezoidal rule over fractions 0 … 1."""
        return torch.trapezoid(self.probabilities, self.fractions, dim=1)

    @property
    def area(self) -> float:
        """The mean area under the curve: for deletion the smaller the better, for insertion the larger."""
        return float(self.areas.mean())

    def mean(self) -> torch.Tensor:
        """The mean curve over the images (steps + 1,)."""
        return self.probabilities.mean(dim=0)


def blurred(images: torch.Tensor, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """Images (B, C, H, W) blurred by a Gaussian of ``sigma`` pixels (kernel 2·ceil(2σ)+1, reflected borders)."""
    return gaussian_blur(images, kernel_size=2 * math.ceil(2 * sigma) + 1, sigma=sigma)


def random_map(shape: tuple[int, int, int], seed: int = 0, cells: tuple[int, int] | None = None) -> torch.Tensor:
    """Maps (B, H, W) of uniform noise drawn from ``seed``: a ranking of the pixels that knows nothing.

    ``cells=None``: noise per pixel, so deletion scatters speckle over the image, which hurts a CNN more than
    removing the object; ``cells=(h, w)``: noise on an h×w grid upsampled bilinearly, blobs of a CAM map's grain.
    """
    if cells is None:
        return torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    noise = torch.rand(shape[0], 1, *cells, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(noise, size=tuple(shape[1:]), mode="bilinear", align_corners=False)[:, 0]


def edge_map(images: torch.Tensor, normalized: bool = True) -> torch.Tensor:
    """Sobel edge maps (B, H, W) in [0, 1]: the gradient magnitude of each image's grey level (the channels' mean,
    denormalised first unless ``normalized=False``), scaled per image; a map that knows only the image's edges."""
    if images.ndim != 4:
        raise ValueError(f"images must be B×C×H×W, got {tuple(images.shape)}")
    pixels = denormalize(images.detach().cpu().float()) if normalized else images.detach().cpu().float()
    grey = pixels.mean(dim=1, keepdim=True)
    sobel = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
    kernels = torch.stack([sobel, sobel.T])[:, None]  # d/dx and d/dy
    gradients = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernels)
    magnitude = gradients.square().sum(dim=1).sqrt()
    peak = magnitude.flatten(1).max(dim=1).values[:, None, None]
    return torch.where(peak > 0, magnitude / torch.where(peak > 0, peak, torch.ones_like(peak)), 0.0)


def deletion_curve(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    *,
    targets: int | Sequence[int] | torch.Tensor | None = None,
    steps: int = 20,
    baseline: str = "mean",
    batch_size: int = 64,
) -> FaithfulnessCurve:
    """The target class's probability as the pixels ``maps`` (B, H, W) rate highest are replaced by the baseline,
    ``1/steps`` of them at a time (default target: the prediction on the intact image); see the module's notes."""
    return _curve("deletion", model, images, maps, targets, steps, baseline, batch_size)


def insertion_curve(
    model: nn.Module,
    images: torch.Tensor,
    maps: torch.Tensor,
    *,
    targets: int | Sequence[int] | torch.Tensor | None = None,
    steps: int = 20,
    baseline: str = "blur",
    batch_size: int = 64,
) -> FaithfulnessCurve:
    """The target class's probability as the pixels ``maps`` (B, H, W) rate highest are put back into the
    baseline, ``1/steps`` of them at a time (default target: the prediction on the intact image)."""
    return _curve("insertion", model, images, maps, targets, steps, baseline, batch_size)


def _baseline_image(images: torch.Tensor, baseline: str) -> torch.Tensor:
    if baseline == "mean":
        return torch.zeros_like(images)
    if baseline == "blur":
        return blurred(images)
    raise ValueError(f"baseline must be 'mean' or 'blur', got {baseline!r}")


def _curve(kind, model, images, maps, targets, steps, baseline, batch_size) -> FaithfulnessCurve:
    """The probabilities after 0, 1, … ``steps`` steps of moving pixels from the start image to the end image."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if images.ndim != 4 or tuple(maps.shape) != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"maps must be B×H×W for images B×C×H×W, got {tuple(maps.shape)} and {tuple(images.shape)}")
    images = images.detach().cpu().float()
    other = _baseline_image(images, baseline)
    start, end = (images, other) if kind == "deletion" else (other, images)
    intact = _probabilities(model, images, batch_size)
    wanted = _target_tensor(targets, images.shape[0])
    chosen = intact.argmax(dim=1) if wanted is None else wanted
    if chosen.min() < 0 or chosen.max() >= intact.shape[1]:
        raise ValueError(f"targets must lie in [0, {intact.shape[1] - 1}], got {chosen.tolist()}")
    batch, height, width = maps.shape
    order = torch.argsort(-maps.detach().cpu().float().flatten(1), dim=1, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(height * width).expand(batch, -1))
    rank = rank.view(batch, 1, height, width)
    columns = []
    for step in range(steps + 1):
        moved = round(step * height * width / steps)
        intact_now = moved == (0 if kind == "deletion" else height * width)
        probs = intact if intact_now else _probabilities(model, torch.where(rank < moved, end, start), batch_size)
        columns.append(probs.gather(1, chosen[:, None])[:, 0])
    fractions = torch.tensor([round(s * height * width / steps) / (height * width) for s in range(steps + 1)])
    return FaithfulnessCurve(kind, fractions.double(), torch.stack(columns, dim=1).double(), chosen)
