"""Figures of images: grids of samples or mistakes, augmentation draws, GradCAM overlays, blanked pixels."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from eva9.analysis import SHORT_NAMES
from eva9.gradcam import overlay

from .base import PathLike, _axes_grid, _finish, _ints, _name, _show, _title

__all__ = ["image_grid", "augmentation_grid", "gradcam_grid", "blanked_grid"]


def image_grid(
    images,
    labels,
    preds=None,
    confidences=None,
    *,
    names: Sequence[str] = SHORT_NAMES,
    ncols: int = 5,
    normalized: bool = True,
    axes=None,
    path: PathLike | None = None,
) -> Figure:
    """Images with their class as title, or ``true → predicted (p)`` where a prediction is wrong.

    ``images``: a B×3×H×W tensor (normalized as the loaders give them unless ``normalized=False``) or a sequence
    of H×W×3 float images in [0, 1].
    """
    n = len(images)
    if n == 0:
        raise ValueError("image_grid needs at least one image")
    labels = _ints(labels, n, "labels")
    preds = _ints(preds, n, "predictions")
    if confidences is not None:
        confidences = [float(c) for c in (confidences.tolist() if hasattr(confidences, "tolist") else confidences)]
        if len(confidences) != n:
            raise ValueError(f"got {len(confidences)} confidences for {n} images")
    fig, grid = _axes_grid(n, ncols, axes, extra_height=0.3)
    for i, ax in enumerate(grid):
        title = _title(names, labels[i], preds[i] if preds else None, confidences[i] if confidences else None)
        _show(ax, images[i], normalized, title)
    return _finish(fig, path)


def augmentation_grid(
    image,
    train_transform,
    test_transform,
    n: int = 7,
    *,
    seed: int | None = 0,
    ncols: int = 8,
    axes=None,
    path: PathLike | None = None,
) -> Figure:
    """One image as the test pipeline shows it, next to ``n`` draws of the (random) train pipeline.

    ``image``: H×W×3 uint8 RGB (what Albumentations takes) or a 3×H×W float tensor in [0, 1] (``cifar10(split)``
    without a transform). ``seed`` fixes the draws on a copy of ``train_transform``; the caller's is untouched.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"a tensor image must be 3×H×W in [0, 1], got {tuple(image.shape)}")
        image = (image.detach().cpu().clamp(0, 1).permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be H×W×3 uint8 RGB, got shape {image.shape} dtype {image.dtype}")
    if seed is not None:
        train_transform = copy.deepcopy(train_transform)
        train_transform.set_random_seed(seed)
    fig, grid = _axes_grid(n + 1, ncols, axes, extra_height=0.3)
    _show(grid[0], test_transform(image=image)["image"], normalized=True, title="test view")
    for i, ax in enumerate(grid[1:], start=1):
        _show(ax, train_transform(image=image)["image"], normalized=True, title=f"train draw {i}")
    return _finish(fig, path)


def gradcam_grid(
    images,
    cams: Mapping[str, torch.Tensor],
    labels,
    preds=None,
    layers: Sequence[str] | None = None,
    *,
    names: Sequence[str] = SHORT_NAMES,
    titles: Sequence[str] | None = None,
    alpha: float = 0.5,
    colormap: str = "jet",
    colorbar: bool = False,
    axes=None,
    path: PathLike | None = None,
) -> Figure:
    """Rows = images, columns = the image and its GradCAM overlay at each layer; rows titled true/predicted class.

    ``images``: normalized B×3×H×W (as the loaders give them); ``cams``: a :class:`eva9.gradcam.CAMResult` or any
    mapping layer → B×H×W maps in [0, 1]. ``labels`` may be None for images whose class is unknown (a photo of
    your own); ``preds`` defaults to the result's predictions; ``layers`` to all of them; ``titles``, one per image,
    replace the row titles; ``colorbar`` adds one bar beside the grid saying what the colours mean.
    """
    n = len(images)
    if n == 0:
        raise ValueError("gradcam_grid needs at least one image")
    layers = list(cams) if layers is None else list(layers)
    unknown = [layer for layer in layers if layer not in cams]
    if unknown or not layers:
        raise ValueError(f"cams has no maps for {unknown or 'any layer'}; it holds {list(cams)}")
    if preds is None:
        preds = getattr(cams, "predictions", None)
    labels = _ints(labels, n, "labels")
    preds = _ints(preds, n, "predictions")
    if titles is not None and len(titles) != n:
        raise ValueError(f"got {len(titles)} titles for {n} images")
    for layer in layers:
        if len(cams[layer]) != n:
            raise ValueError(f"cams[{layer!r}] holds {len(cams[layer])} maps for {n} images")
    columns = 1 + len(layers)
    fig, grid = _axes_grid(n * columns, columns, axes, panel=1.7, extra_height=0.25)
    for row in range(n):
        lines = [] if labels is None else [f"true: {_name(names, labels[row])}"]
        lines += [] if preds is None else [f"pred: {_name(names, preds[row])}"]
        title = titles[row] if titles is not None else "\n".join(lines) or None
        _show(grid[row * columns], images[row], normalized=True, title=title)
        for col, layer in enumerate(layers, start=1):
            ax = grid[row * columns + col]
            ax.imshow(overlay(images[row], cams[layer][row], alpha=alpha, colormap=colormap))
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(layer, fontsize=9)
    if colorbar:
        scale = ScalarMappable(norm=Normalize(0.0, 1.0), cmap=colormap)
        bar = fig.colorbar(scale, ax=grid, shrink=min(1.0, 0.9 / n + 0.1), pad=0.02)
        bar.set_label("map (0: ignored, 1: most used)", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    return _finish(fig, path)


def blanked_grid(
    images,
    masks: Mapping[str, torch.Tensor],
    *,
    axes=None,
    path: PathLike | None = None,
) -> Figure:
    """Rows = images, columns = the intact image and, per named B×H×W boolean mask, the image with the mask's
    pixels blanked to the training set's mean colour (0 in normalised space), as :func:`eva9.gradcam.deletion_test`
    blanks them. ``images``: normalized B×3×H×W."""
    images = torch.as_tensor(images).detach().cpu()
    n = len(images)
    if n == 0 or not masks:
        raise ValueError("blanked_grid needs at least one image and one mask")
    for name, mask in masks.items():
        if tuple(mask.shape) != (n, *images.shape[-2:]):
            raise ValueError(f"mask {name!r} has shape {tuple(mask.shape)}, images need {(n, *images.shape[-2:])}")
    columns = 1 + len(masks)
    fig, grid = _axes_grid(n * columns, columns, axes, panel=1.5, extra_height=0.25)
    for row in range(n):
        _show(grid[row * columns], images[row], normalized=True, title="intact" if row == 0 else None)
        for col, (name, mask) in enumerate(masks.items(), start=1):
            blanked = images[row].masked_fill(mask[row].cpu()[None], 0.0)
            _show(grid[row * columns + col], blanked, normalized=True, title=name if row == 0 else None)
    return _finish(fig, path)
