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

from eva9.files import write_atomic
from eva9.gradcam import _as_display_image

PathLike = Union[str, os.PathLike]

BOOK_COLUMN_PX = 960
"""The narrowest column, in CSS pixels, the book shows a figure in at a laptop window (1280×800, with the layout of
``_theme/eva9.css``; 1056 at 1400×1000): a figure whose PNG is wider is shrunk to it. The figures are sized for it
(tests/test_plots.py checks that their smallest text is at least 8 pt as shown) and the browser check holds the
book to it."""

FIGURE_DPI = 100
"""Every figure's resolution: 100 PNG pixels per inch, so a figure of ``BOOK_COLUMN_PX / FIGURE_DPI`` inches or less
is shown at its own size, where a font of F points appears as F × 100/96 points (CSS has 96 pixels per inch)."""

MAX_WIDTH_IN = BOOK_COLUMN_PX / FIGURE_DPI - 0.3
"""The widest a grid of panels is drawn, in inches: the column less the room the titles take beyond the panels."""


class _Figure(Figure):
    """A Figure that renders itself as PNG for Jupyter, whichever matplotlib backend the kernel has loaded."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("dpi", FIGURE_DPI)  # not the kernel's rcParams: the page is sized for this resolution
        super().__init__(*args, **kwargs)

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()


def _axes_grid(n: int, ncols: int, axes, panel: float = 1.8, extra_height: float = 0.0) -> tuple[Figure, list[Axes]]:
    """``n`` axes in rows of ``ncols`` on a new figure (spare cells removed), or the first ``n`` of ``axes``.

    Panels are ``panel`` inches square, narrower where ``ncols`` of them would be wider than ``MAX_WIDTH_IN``."""
    if axes is not None:
        axes = list(np.ravel(axes))
        if len(axes) < n:
            raise ValueError(f"this figure needs {n} axes, got {len(axes)}")
        return axes[0].figure, axes[:n]
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    panel = min(panel, MAX_WIDTH_IN / ncols)
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


FIGURE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".pdf": "pdf", ".svg": "svg"}
"""The file name extensions a figure may be saved under, and the format each one gets."""


def figure_format(path: PathLike) -> str:
    """The format a figure saved at ``path`` is written in, from its extension; ValueError (one line) for any
    other extension, so that a caller can refuse a name before any work."""
    suffix = Path(path).suffix.lower()
    if suffix not in FIGURE_FORMATS:
        raise ValueError(f"{path}: name a {', '.join(FIGURE_FORMATS)} file (a figure is written in that format)")
    return FIGURE_FORMATS[suffix]


def _finish(fig: Figure, path: PathLike | None) -> Figure:
    """Save the figure at ``path`` (creating its folder) when given, in the format its extension names, whole or
    not at all (:func:`eva9.files.write_atomic`); return the figure."""
    if path is not None:
        path = Path(path)
        kind = figure_format(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda out: fig.savefig(out, format=kind, dpi=120))
    return fig


def _show(ax: Axes, image, normalized: bool, title: str | None = None, interpolation: str | None = None) -> None:
    ax.imshow(_as_display_image(image, normalized=normalized).numpy(), interpolation=interpolation)
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


def _title(names: Sequence[str], label: int, pred: int | None = None, confidence: str | None = None) -> str:
    """``cat`` for a sample or a correct prediction; ``cat → dog (0.93)`` for a mistake, ``confidence`` as written."""
    if pred is None or pred == label:
        return _name(names, label)
    suffix = f" ({confidence})" if confidence is not None else ""
    return f"{_name(names, label)} → {_name(names, pred)}{suffix}"


def _distinct_decimals(values: Sequence[float], fewest: int = 2, most: int = 6) -> list[str]:
    """``values`` written with the fewest decimals (at least ``fewest``, at most ``most``) at which values that
    differ are written differently: a ranking by confidence stays visible when they are all near 1.00."""
    for decimals in range(fewest, most + 1):
        written = [f"{v:.{decimals}f}" for v in values]
        if len(set(written)) == len({round(v, most) for v in values}):
            return written
    return [f"{v:.{most}f}" for v in values]
