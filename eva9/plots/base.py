"""What every figure of :mod:`eva9.plots` shares: figures made without pyplot, panels, titles, saving."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from eva9.gradcam import _as_display_image

PathLike = Union[str, os.PathLike]


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
        return ax.get_figure(root=True), ax  # type: ignore[return-value]  # root=True: a Figure, never a SubFigure
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
