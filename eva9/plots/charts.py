"""Charts of numbers: training curves, accuracy per class, the confusion matrix, the reliability diagram."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import cast

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from eva9.analysis import SHORT_NAMES, ReliabilityTable
from eva9.results import TARGET_ACCURACY

from .base import MAX_WIDTH_IN, PathLike, _axes_grid, _Figure, _finish, _single_axes

__all__ = [
    "training_curves",
    "class_accuracy_bars",
    "confusion_matrix_heatmap",
    "reliability_diagram",
    "lr_range_test",
]


def _history_epochs(history) -> list[dict]:
    """The per-epoch dicts of a History, a ``{"epochs": [...]}`` dict, a recorded run (``results/<name>.json``, its
    ``"history"``), or a history.json path (file or run folder)."""
    if isinstance(history, Mapping) and isinstance(history.get("history"), Mapping):  # a recorded run
        history = history["history"]
    if isinstance(history, (str, os.PathLike)):
        from eva9.train import History, RunFolder

        path = Path(history)
        history = RunFolder(path).history() if path.is_dir() else History.load(path)
    epochs = history.get("epochs") if isinstance(history, Mapping) else getattr(history, "epochs", None)
    if not isinstance(epochs, list):
        raise ValueError(
            'history must be a History, a dict {"epochs": [...]}, a recorded run, or the path of a history.json'
        )
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
        from eva9.train import RunFolder

        folder = RunFolder(Path(history) if Path(history).is_dir() else Path(history).parent)
        if folder.has_config:
            return folder.config().label_smoothing
    return None


LOG_SCALE_SPAN = 10.0
"""training_curves draws the losses on a log scale when the largest it shows is more than this many times the
smallest."""

OFF_SCALE = 2.0
"""training_curves draws a few isolated high losses off the scale (a marker on the top edge names each) when they
are more than this many times every other loss: the live cpu run's first test loss of 6.2, over losses of 1.6 to
2.3, otherwise squashed the rest of its curve into a sixth of the axes."""


def _off_scale(losses: Sequence[float]) -> set[int]:
    """The indices of the losses above the widest gap (as a ratio, more than :data:`OFF_SCALE`) between one loss
    and the next lower, when at most a quarter of them lie above it."""
    order = sorted(range(len(losses)), key=lambda i: losses[i], reverse=True)
    most = max(1, len(losses) // 4)
    gaps = [
        (losses[order[k]] / losses[order[k + 1]], k)
        for k in range(min(most, len(order) - 1))
        if losses[order[k + 1]] > 0
    ]
    if not gaps:
        return set()
    ratio, k = max(gaps)
    return set(order[: k + 1]) if ratio > OFF_SCALE else set()


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
    defaults to what the history's source says (a recorded run's config, a run folder's config.json). Losses that
    span more than a factor of :data:`LOG_SCALE_SPAN` (a first test loss of 100 after a few steps, then 2) are drawn
    on a log scale.
    """
    if label_smoothing is None:
        label_smoothing = _label_smoothing_of(history)
    epochs = _history_epochs(history)
    x = [e["epoch"] for e in epochs]
    if axes is not None:
        fig, (loss_ax, acc_ax) = _axes_grid(2, 2, axes)
    else:
        fig = _Figure(figsize=(MAX_WIDTH_IN, 3.8), layout="constrained")
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
        accuracies = [100 * e[f"{split}_acc"] for e in epochs for split in ("train", "test")] + [100 * target]
        low, high = min(accuracies), max(accuracies)
        acc_ax.set_ylim(low - 0.06 * (high - low), high + 0.08 * (high - low))  # the target line clear of the border
    points = [(e["epoch"], split, e[f"{split}_loss"]) for e in epochs for split in ("train", "test")]
    off = _off_scale([loss for _, _, loss in points])
    shown = [loss for i, (_, _, loss) in enumerate(points) if i not in off]
    log = min(shown) > 0 and max(shown) > LOG_SCALE_SPAN * min(shown)  # a steady fall by orders of magnitude
    if log:
        loss_ax.set(yscale="log", ylabel="loss (log scale)")
    else:
        loss_ax.set(ylabel="loss")
    if off:  # the axis spans the other losses; each one off the scale is a marker on the top edge, named
        low, high = min(shown), max(shown)
        top = high * (high / low) ** 0.08 if log else high + 0.08 * (high - low)
        loss_ax.set_ylim(low / (high / low) ** 0.08 if log else low - 0.08 * (high - low), top)
        colors = {"train": loss_ax.get_lines()[0].get_color(), "test": loss_ax.get_lines()[1].get_color()}
        for epoch, split, loss in (points[i] for i in sorted(off)):
            loss_ax.plot(
                [epoch],
                [top],
                "^",
                color=colors[split],
                markersize=8,
                clip_on=False,
                label=f"{split} loss {loss:.3g} at epoch {epoch}, off the scale",
            )
    loss_ax.set(title="Loss", xlabel="epoch")
    acc_ax.set(title="Accuracy", xlabel="epoch", ylabel="accuracy (%)")
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))  # whole epochs, round steps
        ax.grid(alpha=0.3)
    # The loss labels are long (they say which loss is which): below the axes they cover no curve.
    loss_ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.18))
    acc_ax.legend(fontsize="small")
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
    if not np.isnan(acc).all():  # the mean named at the line's end, right of the bars (a legend covered one)
        mean = 100 * np.nanmean(acc)
        ax.axhline(mean, color="grey", linestyle="--", linewidth=1)
        ax.annotate(
            f"mean\n{mean:.1f}",
            xy=(1, mean),
            xycoords=("axes fraction", "data"),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=9,
            color="0.3",
        )
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
        ax.text(
            p, t, f"{count:g}", ha="center", va="center", fontsize=8, color="white" if count > threshold else "black"
        )
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
    fig: Figure
    if axes is None:
        fig = _Figure(figsize=(5, 5.5), layout="constrained")
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    else:
        axes = list(np.ravel(np.asarray(axes, dtype=object)))
        if len(axes) != 2:
            raise ValueError(f"a reliability diagram needs two axes (diagram, counts), got {len(axes)}")
        top, bottom = axes
        fig = cast(Figure, top.get_figure(root=True))
    edges, counts = np.asarray(table.edges), np.asarray(table.counts)
    filled = counts > 0
    left, width = edges[:-1][filled], np.diff(edges)[filled]
    accuracy, confidence = np.asarray(table.accuracy)[filled], np.asarray(table.confidence)[filled]
    top.bar(
        left, accuracy, width=width, align="edge", color="tab:blue", edgecolor="black", linewidth=0.5, label="accuracy"
    )
    top.bar(
        left,
        confidence - accuracy,
        bottom=accuracy,
        width=width,
        align="edge",
        facecolor="none",
        hatch="//",
        edgecolor="tab:red",
        linewidth=0.5,
        label="gap to mean confidence",
        zorder=3,
    )
    top.plot([0, 1], [0, 1], linestyle="--", color="black", linewidth=1, label="perfect calibration", zorder=4)
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title=f"Reliability diagram (ECE = {100 * table.ece:.2f}%)")
    top.legend(loc="upper left", fontsize=8)
    bars = bottom.bar(
        edges[:-1], counts, width=np.diff(edges), align="edge", color="grey", edgecolor="black", linewidth=0.5
    )
    bottom.bar_label(bars, labels=[f"{c}" if c else "" for c in counts], fontsize=8)
    bottom.set(
        xlabel="confidence (highest softmax probability)",
        ylabel="predictions",
        ylim=(0, 1.25 * max(int(counts.max()), 1)),
    )
    return _finish(fig, path)


def lr_range_test(
    finding, *, peak: float | None = None, ax: Axes | None = None, path: PathLike | None = None
) -> Figure:
    """The loss of each step of a learning-rate range test (:func:`eva9.train.lr_find`) against its learning rate
    (log scale), the smoothed loss, the suggestion (or why there is none), where and why the test stopped, and
    ``peak`` (a profile's learning rate) for comparison.

    The loss axis spans the smoothed loss, all of it; single steps' losses above it are clipped (the legend says so),
    since one noisy step of the climb would otherwise squash the descent into the bottom of the axes."""
    if not finding.lrs:
        raise ValueError("the range test recorded no step (did the first loss diverge?)")
    fig, ax = _single_axes(ax, (8.4, 3.6))
    low = min(min(finding.losses), min(finding.smoothed))
    high = max(finding.smoothed)
    pad = 0.08 * max(high - low, 0.05 * high)
    clipped = max(finding.losses) > high + pad
    ax.plot(
        finding.lrs,
        finding.losses,
        color="0.7",
        linewidth=1,
        label="loss of each step" + ("\n(higher ones clipped)" if clipped else ""),
    )
    ax.plot(finding.lrs, finding.smoothed, color="C0", linewidth=2, label="smoothed loss")
    if finding.suggestion is not None:
        ax.axvline(finding.suggestion, color="C2", label=f"steepest descent: lr {finding.suggestion:.3g}")
    else:  # a legend entry without a line: the reader looks for the suggestion there
        ax.plot(
            [],
            [],
            " ",
            label=_wrapped("no suggestion: the loss did not fall clearly before it rose (too short to suggest a rate)"),
        )
    reason = finding.stop_reason()
    if reason is not None:
        ax.plot(
            finding.lrs[-1], finding.smoothed[-1], "X", color="C3", markersize=9, label=f"stopped: {_wrapped(reason)}"
        )
    if peak is not None:
        ax.axvline(peak, color="C3", linestyle="--", label=f"the profile's lr {peak:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_ylim(low - pad, high + pad)
    ax.grid(alpha=0.3)
    ax.set_title("Learning-rate range test")
    # beside the axes the legend covers no curve, wherever the test stopped
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    return _finish(fig, path)


def _wrapped(text: str, width: int = 30) -> str:
    return textwrap.fill(text, width)
