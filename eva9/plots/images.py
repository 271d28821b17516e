"""Figures of images: grids of samples or mistakes, augmentation draws, GradCAM overlays, blanked pixels."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from eva9 import transforms
from eva9.analysis import SHORT_NAMES
from eva9.gradcam import overlay

from .base import PathLike, _axes_grid, _distinct_decimals, _finish, _ints, _name, _show, _title

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
    """Images with their class as title, or ``true → predicted (p)`` where a prediction is wrong, ``p`` with as
    many decimals as it takes for different confidences to read differently (at least two).

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
        confidences = _distinct_decimals(confidences)
    fig, grid = _axes_grid(n, ncols, axes, extra_height=0.3)
    for i, ax in enumerate(grid):
        title = _title(names, labels[i], preds[i] if preds else None, confidences[i] if confidences else None)
        _show(ax, images[i], normalized, title)
    return _finish(fig, path)


def augmentation_grid(
    images,
    train_transform,
    test_transform,
    n: int = 7,
    *,
    labels=None,
    names: Sequence[str] = SHORT_NAMES,
    seed: int | None = 0,
    axes=None,
    path: PathLike | None = None,
) -> Figure:
    """One row per image: the image as the test pipeline shows it, then ``n`` draws of the (random) train pipeline,
    pixels drawn as the sharp squares they are.

    Each draw is titled with what the pipeline did to it (how far the photograph moved, whether it was flipped,
    whether a hole was cut), as :func:`eva9.transforms.draw` reads it from Albumentations' applied parameters, and
    a dashed frame marks where the photograph's edges went (outside it: the reflected border).

    ``images``: one image or a sequence of them, each H×W×3 uint8 RGB (what Albumentations takes) or a 3×H×W
    float tensor in [0, 1] (``cifar10(split)`` without a transform); ``labels``, one class per image, title the
    test views. ``seed`` fixes the draws on a copy of ``train_transform``; the caller's is untouched.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    single = getattr(images, "ndim", None) == 3  # one image, not a batch or a list of them
    pictures = [_uint8_image(image) for image in ([images] if single else list(images))]
    if not pictures:
        raise ValueError("augmentation_grid needs at least one image")
    labels = _ints(labels, len(pictures), "labels")
    if seed is not None:
        train_transform = copy.deepcopy(train_transform)
        train_transform.set_random_seed(seed)
    columns = n + 1
    fig, grid = _axes_grid(len(pictures) * columns, columns, axes, extra_height=0.55)
    for row, picture in enumerate(pictures):
        title = "test view" if labels is None else f"{_name(names, labels[row])}\n(test view)"
        _show(grid[row * columns], test_transform(image=picture)["image"], True, title, interpolation="nearest")
        for ax in grid[row * columns + 1 : (row + 1) * columns]:
            d = transforms.draw(train_transform, picture)
            _show(ax, d.image, True, _what_was_done(d), interpolation="nearest")
            right, down = _moved(d)
            height, width = picture.shape[:2]
            ax.add_patch(Rectangle((right - 0.5, down - 0.5), width, height, fill=False, ls="--", lw=1.2, ec="#ffd400"))
    return _finish(fig, path)


def _uint8_image(image) -> np.ndarray:
    """An H×W×3 uint8 RGB image from itself or from a 3×H×W float tensor in [0, 1]."""
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"a tensor image must be 3×H×W in [0, 1], got {tuple(image.shape)}")
        image = (image.detach().cpu().clamp(0, 1).permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be H×W×3 uint8 RGB, got shape {image.shape} dtype {image.dtype}")
    return image


def _moved(d: transforms.Draw) -> tuple[int, int]:
    """(right, down): how far the photograph's frame moved in the draw; the flip mirrors the crop's shift."""
    right, down = d.shift
    return (-right if d.flipped else right), down


def _what_was_done(d: transforms.Draw) -> str:
    """``2 right, 1 up`` / ``flipped`` / ``hole``: where the photograph moved, the flip and the hole, one per line."""
    right, down = _moved(d)
    moves = [f"{abs(right)} {'right' if right > 0 else 'left'}"] if right else []
    moves += [f"{abs(down)} {'down' if down > 0 else 'up'}"] if down else []
    return "\n".join(
        [", ".join(moves) or "not moved", "flipped" if d.flipped else "not flipped", "hole" if d.holes else "no hole"]
    )


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
    axes=None,
    path: PathLike | None = None,
) -> Figure:
    """Rows = images, columns = the image and its GradCAM overlay at each layer; rows titled true/predicted class.
    A colour bar under the overlays (the figure's last axes) says what blue and red mean.

    ``images``: normalized B×3×H×W (as the loaders give them); ``cams``: a :class:`eva9.gradcam.CAMResult` or any
    mapping layer → B×H×W maps in [0, 1]. ``labels`` may be None for images whose class is unknown (a photo of
    your own); ``preds`` defaults to the result's predictions; ``layers`` to all of them; ``titles``, one per image,
    replace the row titles.
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
    _colour_bar(fig, [grid[row * columns + col] for row in range(n) for col in range(1, columns)], colormap)
    return _finish(fig, path)


def _colour_bar(fig: Figure, axes: list, colormap: str) -> None:
    """The scale of the maps under the overlay columns: what blue and red mean."""
    bar = fig.colorbar(
        ScalarMappable(norm=Normalize(0, 1), cmap=colormap),
        ax=axes,
        orientation="horizontal",
        fraction=0.05,
        pad=0.02,
        aspect=40,
        ticks=[0, 0.5, 1],
    )
    bar.ax.tick_params(labelsize=8)
    bar.set_label("GradCAM map, scaled per image\nblue 0: no evidence for the class · red 1: its strongest evidence")
    bar.ax.xaxis.label.set_fontsize(8)


def blanked_grid(
    images,
    masks: Mapping[str, torch.Tensor],
    labels=None,
    *,
    names: Sequence[str] = SHORT_NAMES,
    axes=None,
    path: PathLike | None = None,
) -> Figure:
    """Rows = images, columns = the intact image and, per named B×H×W boolean mask, the image with the mask's
    pixels blanked to the training set's mean colour (0 in normalised space), as :func:`eva9.gradcam.deletion_test`
    blanks them. Each row is labelled on the left with its image's class (``labels``) or its number, each column
    with its mask's name. ``images``: normalized B×3×H×W."""
    images = torch.as_tensor(images).detach().cpu()
    n = len(images)
    if n == 0 or not masks:
        raise ValueError("blanked_grid needs at least one image and one mask")
    for name, mask in masks.items():
        if tuple(mask.shape) != (n, *images.shape[-2:]):
            raise ValueError(f"mask {name!r} has shape {tuple(mask.shape)}, images need {(n, *images.shape[-2:])}")
    labels = _ints(labels, n, "labels")
    columns = 1 + len(masks)
    fig, grid = _axes_grid(n * columns, columns, axes, panel=1.5, extra_height=0.25)
    for row in range(n):
        _show(grid[row * columns], images[row], normalized=True, title="intact" if row == 0 else None)
        grid[row * columns].set_ylabel(_name(names, labels[row]) if labels else f"image {row + 1}", fontsize=9)
        for col, (name, mask) in enumerate(masks.items(), start=1):
            blanked = images[row].masked_fill(mask[row].cpu()[None], 0.0)
            _show(grid[row * columns + col], blanked, normalized=True, title=name if row == 0 else None)
    return _finish(fig, path)
