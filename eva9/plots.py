"""Figures for the course: image grids, augmentation draws, training curves, GradCAM grids, class accuracy, confusion.

Every function returns a matplotlib ``Figure`` (Jupyter shows it when it is a cell's value), draws into the
``ax``/``axes`` given instead of a new figure when asked, and saves a PNG when given a ``path``. New figures are
made without pyplot: nothing accumulates in pyplot's global state, nothing needs closing, and a notebook shows
each figure once (as the cell's value) rather than twice.
"""

from __future__ import annotations

import copy
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Union

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from eva9.analysis import SHORT_NAMES, ReliabilityTable
from eva9.gradcam import _as_display_image, overlay
from eva9.results import TARGET_ACCURACY

__all__ = [
    "augmentation_grid",
    "class_accuracy_bars",
    "confusion_matrix_heatmap",
    "gradcam_grid",
    "image_grid",
    "reliability_diagram",
    "training_curves",
]

PathLike = Union[str, os.PathLike]


# ------------------------------------------------------------------------------------------------------ helpers


class _Figure(Figure):
    """A Figure that renders itself as PNG for Jupyter, whichever matplotlib backend the kernel has loaded."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()


def _axes_grid(n: int, ncols: int, axes, panel: float = 1.8, extra_height: float = 0.0) -> tuple[Figure, list[Axes]]:
    """``n`` axes in rows of ``ncols`` on a new figure (spare cells removed), or the first ``n`` of ``axes``."""
    if axes is not None:
        axes = list(np.ravel(axes))
        if len(axes) < n:
            raise ValueError(f"this figure needs {n} axes, got {len(axes)}")
        return axes[0].figure, axes[:n]
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = _Figure(figsize=(panel * ncols, (panel + extra_height) * nrows), layout="constrained")
    grid = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for spare in grid[n:]:
        fig.delaxes(spare)
    return fig, grid[:n]


def _single_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig = _Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _finish(fig: Figure, path: PathLike | None) -> Figure:
    """Save a PNG at ``path`` (creating its folder) when given; return the figure."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=120)
    return fig


def _show(ax: Axes, image, normalized: bool, title: str | None = None) -> None:
    ax.imshow(_as_display_image(image, normalized=normalized).numpy())
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=9)


def _ints(values, n: int, what: str) -> list[int] | None:
    if values is None:
        return None
    values = [int(v) for v in (values.tolist() if isinstance(values, (torch.Tensor, np.ndarray)) else values)]
    if len(values) != n:
        raise ValueError(f"got {len(values)} {what} for {n} images")
    return values


def _name(names: Sequence[str], label: int) -> str:
    if not 0 <= label < len(names):
        raise ValueError(f"class {label} is outside the {len(names)} class names")
    return names[label]


def _title(names: Sequence[str], label: int, pred: int | None = None, confidence: float | None = None) -> str:
    """``cat`` for a sample or a correct prediction; ``cat → dog (0.93)`` for a mistake."""
    if pred is None or pred == label:
        return _name(names, label)
    suffix = f" ({confidence:.2f})" if confidence is not None else ""
    return f"{_name(names, label)} → {_name(names, pred)}{suffix}"


# ------------------------------------------------------------------------------------------------------ figures


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


def _history_epochs(history) -> list[dict]:
    """The per-epoch dicts of a History, a ``{"epochs": [...]}`` dict, or a history.json path (file or run folder)."""
    if isinstance(history, (str, os.PathLike)):
        from eva9.train import History

        history = History.load(history)
    epochs = history.get("epochs") if isinstance(history, Mapping) else getattr(history, "epochs", None)
    if not isinstance(epochs, list):
        raise ValueError('history must be a History, a dict {"epochs": [...]}, or the path of a history.json')
    if not epochs:
        raise ValueError("the history has no epochs yet")
    needed = {"epoch", "train_loss", "train_acc", "test_loss", "test_acc"}
    missing = needed - set(epochs[0])
    if missing:
        raise ValueError(f"history epochs lack {sorted(missing)}")
    return epochs


def _label_smoothing_of(history) -> float | None:
    """The label smoothing of the run ``history`` comes from, where it says: a recorded run's config, or the
    config.json next to a history.json."""
    if isinstance(history, Mapping) and isinstance(history.get("config"), Mapping):
        return history["config"].get("label_smoothing")
    if isinstance(history, (str, os.PathLike)):
        folder = Path(history) if Path(history).is_dir() else Path(history).parent
        if (folder / "config.json").is_file():
            import json

            return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("label_smoothing")
    return None


def training_curves(
    history,
    *,
    label_smoothing: float | None = None,
    target: float | None = TARGET_ACCURACY,
    axes=None,
    path: PathLike | None = None,
) -> Figure:
    """Train and test loss (left) and accuracy in % (right) per epoch, with the target accuracy as a line.

    The two losses are not the same quantity, and the legend says so: the training loss is the training criterion
    (label-smoothed when ``label_smoothing`` > 0, which keeps it above the plain cross-entropy) averaged over the
    epoch while the weights change; the test loss is plain cross-entropy after the epoch. ``label_smoothing``
    defaults to what the history's source says (a recorded run's config, a run folder's config.json).
    """
    if label_smoothing is None:
        label_smoothing = _label_smoothing_of(history)
    epochs = _history_epochs(history)
    x = [e["epoch"] for e in epochs]
    if axes is not None:
        fig, (loss_ax, acc_ax) = _axes_grid(2, 2, axes)
    else:
        fig = _Figure(figsize=(10, 3.8), layout="constrained")
        loss_ax, acc_ax = fig.subplots(1, 2)
    if label_smoothing:
        train_loss = f"train: cross-entropy label-smoothed {label_smoothing:g}, mean over the epoch"
    elif label_smoothing is None:
        train_loss = "train: training criterion, mean over the epoch"
    else:
        train_loss = "train: cross-entropy, mean over the epoch"
    loss_labels = {"train": train_loss, "test": "test: cross-entropy after the epoch"}
    for split, style in (("train", "-o"), ("test", "-s")):
        loss_ax.plot(x, [e[f"{split}_loss"] for e in epochs], style, markersize=3, label=loss_labels[split])
        acc_ax.plot(x, [100 * e[f"{split}_acc"] for e in epochs], style, markersize=3, label=split)
    if target is not None:
        acc_ax.axhline(100 * target, color="grey", linestyle="--", linewidth=1, label=f"target {100 * target:g}%")
    loss_ax.set(title="Loss", xlabel="epoch", ylabel="loss")
    acc_ax.set(title="Accuracy", xlabel="epoch", ylabel="accuracy (%)")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
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
    axes=None,
    path: PathLike | None = None,
) -> Figure:
    """Rows = images, columns = the image and its GradCAM overlay at each layer; rows titled true/predicted class.

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
    return _finish(fig, path)


def class_accuracy_bars(
    acc,
    *,
    names: Sequence[str] = SHORT_NAMES,
    ax: Axes | None = None,
    path: PathLike | None = None,
) -> Figure:
    """Accuracy per class in %, one labelled bar per class, with the mean as a dashed line."""
    acc = np.asarray(acc, dtype=np.float64).reshape(-1)
    if len(acc) != len(names):
        raise ValueError(f"got {len(acc)} accuracies for {len(names)} class names")
    fig, ax = _single_axes(ax, (7, 3.2))
    percent = 100 * np.nan_to_num(acc, nan=0.0)
    bars = ax.bar(list(names), percent, color="tab:blue")
    ax.bar_label(bars, labels=["n/a" if np.isnan(a) else f"{100 * a:.0f}" for a in acc], fontsize=8)
    if not np.isnan(acc).all():
        ax.axhline(100 * np.nanmean(acc), color="grey", linestyle="--", linewidth=1, label="mean")
        ax.legend(loc="lower right")
    ax.set(title="Accuracy per class", ylabel="accuracy (%)", ylim=(0, 105))
    return _finish(fig, path)


def confusion_matrix_heatmap(
    cm,
    *,
    names: Sequence[str] = SHORT_NAMES,
    ax: Axes | None = None,
    path: PathLike | None = None,
) -> Figure:
    """The confusion matrix (rows true, columns predicted) as a heat map with the count in every cell."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape != (len(names), len(names)):
        raise ValueError(f"cm must be {len(names)}×{len(names)} like the class names, got shape {cm.shape}")
    fig, ax = _single_axes(ax, (6, 5.5))
    ax.imshow(cm, cmap="Blues")
    threshold = cm.max() / 2 if cm.size else 0
    for (t, p), count in np.ndenumerate(cm):
        ax.text(p, t, f"{count:g}", ha="center", va="center", fontsize=8,
                color="white" if count > threshold else "black")
    ticks = range(len(names))
    ax.set_xticks(ticks, labels=list(names), rotation=45, ha="right")
    ax.set_yticks(ticks, labels=list(names))
    ax.set(title="Confusion matrix", xlabel="predicted", ylabel="true")
    return _finish(fig, path)


def reliability_diagram(
    table: ReliabilityTable,
    *,
    axes: Sequence[Axes] | None = None,
    path: PathLike | None = None,
) -> Figure:
    """Accuracy per confidence bin against the diagonal of perfect calibration (ECE in the title), counts below.

    ``table`` comes from :func:`eva9.analysis.reliability_table`. Each non-empty bin has a blue bar up to its
    accuracy and a hatched red bar spanning the gap to its mean confidence (above the blue bar: overconfident,
    inside it: underconfident). The lower
    panel shows how many predictions fall in each bin. ``axes``: two axes to draw into (diagram, counts).
    """
    if axes is None:
        fig = _Figure(figsize=(5, 5.5), layout="constrained")
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    else:
        axes = list(np.ravel(axes))
        if len(axes) != 2:
            raise ValueError(f"a reliability diagram needs two axes (diagram, counts), got {len(axes)}")
        top, bottom = axes
        fig = top.figure
    edges, counts = np.asarray(table.edges), np.asarray(table.counts)
    filled = counts > 0
    left, width = edges[:-1][filled], np.diff(edges)[filled]
    accuracy, confidence = np.asarray(table.accuracy)[filled], np.asarray(table.confidence)[filled]
    top.bar(left, accuracy, width=width, align="edge", color="tab:blue", edgecolor="black", linewidth=0.5,
            label="accuracy")
    top.bar(left, confidence - accuracy, bottom=accuracy, width=width, align="edge", facecolor="none", hatch="//",
            edgecolor="tab:red", linewidth=0.5, label="gap to mean confidence", zorder=3)
    top.plot([0, 1], [0, 1], linestyle="--", color="black", linewidth=1, label="perfect calibration", zorder=4)
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title=f"Reliability diagram (ECE = {100 * table.ece:.2f}%)")
    top.legend(loc="upper left", fontsize=8)
    bars = bottom.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="grey", edgecolor="black",
                      linewidth=0.5)
    bottom.bar_label(bars, labels=[f"{c}" if c else "" for c in counts], fontsize=7)
    bottom.set(xlabel="confidence (highest softmax probability)", ylabel="predictions",
               ylim=(0, 1.25 * max(int(counts.max()), 1)))
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
