"""Figures for the course: image grids, augmentation draws, training curves, GradCAM grids, the CAM
methods compared, class accuracy, confusion.

Every function returns a matplotlib ``Figure`` (Jupyter shows it when it is a cell's value), draws into the
``ax``/``axes`` given instead of a new figure when asked, and saves a PNG when given a ``path``. New figures are
made without pyplot: nothing accumulates in pyplot's global state, nothing needs closing, and a notebook shows
each figure once (as the cell's value) rather than twice.

The figures live in four modules, :mod:`eva9.plots.images` (pictures), :mod:`eva9.plots.charts` (numbers),
:mod:`eva9.plots.cams` (the CAM methods compared: map grids and deletion/insertion curves) and
:mod:`eva9.plots.network` (the network's figure), with their shared helpers in :mod:`eva9.plots.base`; every figure
is importable from ``eva9.plots``.
"""

from eva9.analysis import SHORT_NAMES  # noqa: F401  (the class names the figures use)

from .base import BOOK_COLUMN_PX
from .cams import faithfulness_curves, method_layers_grid, methods_grid
from .charts import class_accuracy_bars, confusion_matrix_heatmap, lr_range_test, reliability_diagram, training_curves
from .images import augmentation_grid, blanked_grid, gradcam_grid, image_grid
from .network import network_diagram, network_layout

__all__ = [
    "BOOK_COLUMN_PX",
    "augmentation_grid",
    "blanked_grid",
    "class_accuracy_bars",
    "confusion_matrix_heatmap",
    "faithfulness_curves",
    "gradcam_grid",
    "image_grid",
    "network_diagram",
    "network_layout",
    "lr_range_test",
    "method_layers_grid",
    "methods_grid",
    "reliability_diagram",
    "training_curves",
]
