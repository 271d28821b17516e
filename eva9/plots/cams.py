"""Figures that compare the CAM family: images × methods at one layer, one image × methods × layers, and the
deletion and insertion curves. Every map grid has a colour bar that says what the colours mean."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from eva9.analysis import SHORT_NAMES
from eva9.gradcam import FaithfulnessCurve, overlay

from .base import PathLike, _axes_grid, _Figure, _finish, _ints, _name, _show

SMALLEST_TEXT = 8
"""Points: no text of these figures is smaller at the size they are drawn."""
WIDTH = 7.5
"""Inches: the map grids' panels share at most this width (plus the colour bar), about the width of the book's page
at 100 dpi, so that the book shows them at their drawn size and their text at >= 8 pt."""


def _panel(columns: int) -> float:
    return min(1.5, WIDTH / columns)


def _colour_bar(fig: Figure, axes, colormap: str) -> None:
    """A colour bar beside ``axes`` that names both ends of the scale of a per-image scaled map."""
    bar = fig.colorbar(
        ScalarMappable(Normalize(0.0, 1.0), matplotlib.colormaps[colormap]), ax=axes, shrink=0.8, ticks=[0, 1]
    )
    bar.ax.set_yticklabels(["0: none", "1: strongest\nin this map"], fontsize=SMALLEST_TEXT)
    bar.set_label("evidence for the class (blue → red)", fontsize=SMALLEST_TEXT + 1)


def _maps_of(results: Mapping[str, Mapping[str, torch.Tensor]], layers: Sequence[str], n: int) -> None:
    if not results:
        raise ValueError("give the maps of at least one method")
    for method, maps in results.items():
        for layer in layers:
            if layer not in maps:
                raise ValueError(f"the {method!r} maps hold no layer {layer!r}; they hold {list(maps)}")
            if len(maps[layer]) < n:
                raise ValueError(f"the {method!r} maps at {layer!r} hold {len(maps[layer])} images, need {n}")


def _overlay_cell(ax, image, heat, alpha: float, colormap: str, title: str | None = None) -> None:
    ax.imshow(overlay(image, heat, alpha=alpha, colormap=colormap))
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=SMALLEST_TEXT + 1)


def methods_grid(
    images,
    results: Mapping[str, Mapping[str, torch.Tensor]],
    layer: str,
    labels=None,
    *,
    names: Sequence[str] = SHORT_NAMES,
    alpha: float = 0.5,
    colormap: str = "jet",
    axes=None,
    path: PathLike | None = None,
) -> Figure:
    """Rows = images, columns = the image and each method's map at ``layer``, with a colour bar.

    ``results``: method → a :class:`eva9.gradcam.CAMResult` (or any mapping layer → B×H×W maps in [0, 1]);
    ``labels``, if given, title each row's image with its true class.
    """
    n = len(images)
    if n == 0:
        raise ValueError("methods_grid needs at least one image")
    _maps_of(results, [layer], n)
    labels = _ints(labels, n, "labels")
    columns = 1 + len(results)
    fig, grid = _axes_grid(n * columns, columns, axes, panel=_panel(columns), extra_height=0.2)
    for row in range(n):
        title = None if labels is None else _name(names, labels[row])
        _show(grid[row * columns], images[row], normalized=True, title=title)
        for col, (method, maps) in enumerate(results.items(), start=1):
            heading = method if row == 0 else None
            _overlay_cell(grid[row * columns + col], images[row], maps[layer][row], alpha, colormap, heading)
    fig.suptitle(f"the CAM methods at {layer}", fontsize=SMALLEST_TEXT + 2)
    _colour_bar(fig, grid, colormap)
    return _finish(fig, path)


def method_layers_grid(
    images,
    results: Mapping[str, Mapping[str, torch.Tensor]],
    layers: Sequence[str],
    index: int = 0,
    *,
    alpha: float = 0.5,
    colormap: str = "jet",
    axes=None,
    path: PathLike | None = None,
) -> Figure:
    """One image (``images[index]``): rows = methods, columns = the image and the method's map at each layer."""
    if not 0 <= index < len(images):
        raise ValueError(f"index {index} is outside the {len(images)} images")
    layers = list(layers)
    _maps_of(results, layers, index + 1)
    columns = 1 + len(layers)
    fig, grid = _axes_grid(len(results) * columns, columns, axes, panel=_panel(columns), extra_height=0.1)
    for row, (method, maps) in enumerate(results.items()):
        _show(grid[row * columns], images[index], normalized=True)
        grid[row * columns].set_ylabel(method, fontsize=SMALLEST_TEXT + 1)
        for col, layer in enumerate(layers, start=1):
            heading = layer if row == 0 else None
            _overlay_cell(grid[row * columns + col], images[index], maps[layer][index], alpha, colormap, heading)
    _colour_bar(fig, grid, colormap)
    return _finish(fig, path)


COINCIDE = 0.005
"""Mean curves that differ by no more than this probability at every fraction are drawn as one line: at the book's
size that is less than a line's width, so separate lines would lie on top of each other. At ``layer4`` GradCAM,
XGradCAM and HiResCAM give the same map (up to rounding, which reorders tied pixels: their deletion curves differ
by 0.0015 for the published network)."""


def _coinciding(curves: Mapping[str, FaithfulnessCurve]) -> list[list[str]]:
    """The names of ``curves`` in groups whose mean curves coincide (:data:`COINCIDE`), in their first order."""
    groups: list[list[str]] = []
    for name, curve in curves.items():
        for group in groups:
            first = curves[group[0]]
            if first.fractions.shape == curve.fractions.shape and bool(
                torch.allclose(first.fractions, curve.fractions)
                and (first.mean() - curve.mean()).abs().max() <= COINCIDE
            ):
                group.append(name)
                break
        else:
            groups.append([name])
    return groups


def _group_label(names: Sequence[str]) -> str:
    """ "gradcam = xgradcam = hirescam @ layer4" for maps of one layer, else the names joined by " = "."""
    layers = {name.partition(" @ ")[2] for name in names}
    if len(layers) == 1 and all(" @ " in name for name in names) and len(names) > 1:
        return " = ".join(name.partition(" @ ")[0] for name in names) + f" @ {layers.pop()}"
    return " = ".join(names)


def faithfulness_curves(
    deletion: Mapping[str, FaithfulnessCurve],
    insertion: Mapping[str, FaithfulnessCurve],
    *,
    axes=None,
    path: PathLike | None = None,
) -> Figure:
    """Two panels: the mean deletion and the mean insertion curve of each named map, with its area in the legend.

    Curves named ``"method @ layer"`` are drawn solid, the others (the baselines: random and edge maps) dashed.
    Curves that coincide (:data:`COINCIDE`; at ``layer4`` GradCAM, XGradCAM and HiResCAM give the same map) are
    drawn once, and their legend entry names them all: "gradcam = xgradcam = hirescam @ layer4".
    """
    if not deletion or not insertion:
        raise ValueError("give at least one deletion and one insertion curve")
    if axes is None:
        axes = _Figure(figsize=(WIDTH + 0.5, 6.4), layout="constrained").subplots(1, 2)
    axes = list(np.ravel(axes))
    if len(axes) < 2:
        raise ValueError(f"this figure needs 2 axes, got {len(axes)}")
    fig = axes[0].figure
    panels = [
        (axes[0], deletion, "deletion: most important pixels removed first", "area: lower is better"),
        (axes[1], insertion, "insertion: most important pixels restored first", "area: higher is better"),
    ]
    names = list(dict.fromkeys([*deletion, *insertion]))
    colours = {name: f"C{i % 10}" for i, name in enumerate(names)}  # a map keeps its colour in both panels
    for ax, curves, title, better in panels:
        groups = _coinciding(curves)
        for group in groups:
            curve = curves[group[0]]
            style = "-" if all(" @ " in name for name in group) else "--"
            areas = sorted(f"{curves[name].area:.3f}" for name in group)
            area = areas[0] if areas[0] == areas[-1] else f"{areas[0]}–{areas[-1]}"
            label = f"{_group_label(group)} ({area})"
            ax.plot(curve.fractions.numpy(), curve.mean().numpy(), style, color=colours[group[0]], label=label)
        ax.set_title(title, fontsize=SMALLEST_TEXT + 2)
        ax.set_xlabel("fraction of pixels replaced" if ax is axes[0] else "fraction of pixels restored", fontsize=9)
        ax.set_ylabel("mean probability of the class", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=SMALLEST_TEXT)
        merged = any(len(group) > 1 for group in groups)
        ax.legend(
            title=better + ("\na = b: curves within 0.005 of each other, drawn once" if merged else ""),
            fontsize=SMALLEST_TEXT,
            title_fontsize=SMALLEST_TEXT,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.16),
        )
    return _finish(fig, path)
