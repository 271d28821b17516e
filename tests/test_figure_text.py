"""Every figure of eva9.plots, drawn as the chapters draw it, has no text smaller than 8 pt as the book shows it.

The book shows a figure's PNG (rendered as Jupyter renders it: ``_repr_png_``, a tight bounding box, the figure's
dpi) at its own width, or shrunk to the page's column (``plots.BOOK_COLUMN_PX``) when it is wider. A font of F
points drawn at D dots per inch and shrunk by s appears as F × D/96 × s points (96 CSS pixels per inch). The
sizes are those the renderer actually draws: every string drawn is recorded, so hidden tick labels do not count
and none that is drawn is missed.
"""

from __future__ import annotations

import contextlib
import struct

import matplotlib

matplotlib.use("Agg")  # this test process only: render without a display

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.backends.backend_agg import RendererAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from eva9 import analysis, models, plots, train, transforms  # noqa: E402
from eva9.data import MEAN, STD  # noqa: E402
from eva9.plots.base import _Figure  # noqa: E402

SMALLEST_PT = 8.0


@contextlib.contextmanager
def recorded_font_sizes():
    """The size in points of every string the Agg renderer draws inside the block."""
    sizes: list[float] = []
    draw_text = RendererAgg.draw_text

    def recording(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if str(s).strip():
            sizes.append(prop.get_size_in_points())
        return draw_text(self, gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)

    RendererAgg.draw_text = recording
    try:
        yield sizes
    finally:
        RendererAgg.draw_text = draw_text


def shown_text_pt(fig: Figure, column_px: int = plots.BOOK_COLUMN_PX) -> tuple[float, int]:
    """The smallest text of ``fig`` in points as the book shows it, and the width of its PNG in pixels."""
    with recorded_font_sizes() as sizes:
        png = fig._repr_png_()
    width = struct.unpack(">I", png[16:20])[0]  # the IHDR chunk: width, then height
    scale = min(1.0, column_px / width)
    return min(sizes) * fig.dpi / 96 * scale, width


def normalize(images: torch.Tensor) -> torch.Tensor:
    return (images - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def history(n: int = 30) -> dict:
    return {
        "epochs": [
            {
                "epoch": i + 1,
                "train_loss": 2 / (i + 1),
                "train_acc": 0.3 + i / 50,
                "test_loss": 2.1 / (i + 1),
                "test_acc": 0.3 + i / 55,
                "lr": 0.01,
                "seconds": 4.0,
            }
            for i in range(n)
        ],
        "config": {"label_smoothing": 0.1},
    }


def reliability() -> analysis.ReliabilityTable:
    generator = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(2000, 10, generator=generator), dim=1)
    return analysis.reliability_table(probs, torch.randint(0, 10, (2000,), generator=generator))


def range_test() -> train.LRFinding:
    lrs = [1e-3 * 3000 ** (k / 47) for k in range(48)]
    return train.read_range_test(((lr, 2.3 + (lr > 0.02) * 40 * np.log10(lr / 0.02)) for lr in lrs), beta=0.9)


images = normalize(torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
maps = {layer: torch.rand(5, 32, 32) for layer in ("layer1", "layer2", "layer3", "layer4")}
picture = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)

# each figure as a chapter draws it (the arguments of the chapter's call)
FIGURES = {
    "image_grid, the data chapter's 8 columns": lambda: plots.image_grid(
        transforms.denormalize(images), list(range(10)) + list(range(6)), ncols=8, normalized=False
    ),
    "image_grid, the gallery of mistakes": lambda: plots.image_grid(
        images[:15], [3] * 15, [5] * 15, np.linspace(0.999, 0.5, 15)
    ),
    "augmentation_grid": lambda: plots.augmentation_grid(
        [picture] * 3, transforms.train_transforms(), transforms.test_transforms(), n=5, labels=[1, 7, 2]
    ),
    "augmentation_grid, one image (the hole-size exercise)": lambda: plots.augmentation_grid(
        picture, transforms.train_transforms(), transforms.test_transforms(), n=7
    ),
    "gradcam_grid": lambda: plots.gradcam_grid(images[:5], maps, [1, 2, 3, 5, 8], [1, 2, 5, 5, 8]),
    "blanked_grid": lambda: plots.blanked_grid(
        images[:4],
        {name: torch.rand(4, 32, 32) > 0.8 for name in ("map's top 20 %", "random blobs", "scattered")},
        labels=[0, 2, 5, 7],
    ),
    "training_curves": lambda: plots.training_curves(history()),
    "class_accuracy_bars": lambda: plots.class_accuracy_bars(np.linspace(0.7, 0.95, 10)),
    "confusion_matrix_heatmap": lambda: plots.confusion_matrix_heatmap(np.arange(100).reshape(10, 10) * 9),
    "reliability_diagram": lambda: plots.reliability_diagram(reliability()),
    "network_diagram": lambda: plots.network_diagram(models.resnet18()),
    "lr_range_test, stopped without a suggestion": lambda: plots.lr_range_test(range_test(), peak=0.2),
}


@pytest.mark.parametrize("name", list(FIGURES))
def test_the_smallest_text_is_at_least_8_pt_as_the_book_shows_the_figure(name):
    shown, width = shown_text_pt(FIGURES[name]())
    assert shown >= SMALLEST_PT, f"{name}: smallest text {shown:.1f} pt as shown (PNG {width} px wide)"


def test_the_measure_sees_small_text_and_the_shrinking_of_a_wide_figure():
    narrow = _Figure(figsize=(4, 2), dpi=100)
    narrow.text(0.5, 0.5, "small", fontsize=6)
    assert shown_text_pt(narrow)[0] == pytest.approx(6 * 100 / 96)
    wide = _Figure(figsize=(19.2, 2), dpi=100)  # about twice the column: shrunk by half
    wide.text(0.01, 0.5, "left", fontsize=12)
    wide.text(0.95, 0.5, "right", fontsize=12)
    shown, width = shown_text_pt(wide)
    assert shown == pytest.approx(12 * 100 / 96 * plots.BOOK_COLUMN_PX / width)
    assert shown < SMALLEST_PT
