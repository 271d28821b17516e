"""Figures for the course: image grids, augmentation draws, training curves, GradCAM grids, class accuracy, confusion.

Every function returns a matplotlib ``Figure`` (Jupyter shows it when it is a cell's value), draws into the
``ax``/``axes`` given instead of a new figure when asked, and saves a PNG when given a ``path``. New figures are
made without pyplot: nothing accumulates in pyplot's global state, nothing needs closing, and a notebook shows
each figure once (as the cell's value) rather than twice.

The figures live in two modules, :mod:`eva9.plots.images` (pictures) and :mod:`eva9.plots.charts` (numbers),
with their shared helpers in :mod:`eva9.plots.base`
and the network's figure in :mod:`eva9.plots.network`; every figure is importable from ``eva9.plots``.
"""

from eva9.analysis import SHORT_NAMES  # noqa: F401  (the class names the figures use)

from .base import BOOK_COLUMN_PX
from .charts import class_accuracy_bars, confusion_matrix_heatmap, lr_range_test, reliability_diagram, training_curves
from .images import augmentation_grid, blanked_grid, gradcam_grid, image_grid
from .network import network_diagram, network_layout

__all__ = [
    "BOOK_COLUMN_PX",
    "augmentation_grid",
    "blanked_grid",
    "class_accuracy_bars",
    "confusion_matrix_heatmap",
    "gradcam_grid",
    "image_grid",
    "network_diagram",
    "network_layout",
    "lr_range_test",
    "reliability_diagram",
    "training_curves",
]
