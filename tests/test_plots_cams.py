"""The CAM comparison figures: the panels and titles a reader sees, a colour bar that names its ends, text no
smaller than 8 pt, PNGs saved, and pyplot left alone."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # this test process only: render without a display

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from test_plots import assert_png, normalize, pyplot_untouched  # noqa: E402, F401 - the fixture applies here too

from eva9 import plots  # noqa: E402
from eva9.gradcam import FaithfulnessCurve, overlay  # noqa: E402

METHODS = ["gradcam", "gradcam++", "layercam"]
LAYERS = ["layer1", "layer2", "layer3", "layer4"]


def fake_results(n: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    return {m: {layer: torch.rand(n, 32, 32, generator=generator) for layer in LAYERS} for m in METHODS}


def smallest_text(fig) -> float:
    fig.canvas.draw()
    return min(t.get_fontsize() for t in fig.findobj(Text) if t.get_text() and t.get_visible())


def colour_bar(fig):
    [bar] = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    return bar


def test_methods_grid_has_a_row_per_image_a_column_per_method_and_a_colour_bar(tmp_path):
    images = normalize(torch.rand(4, 3, 32, 32))
    results = fake_results(4)
    fig = plots.methods_grid(images, results, "layer4", [0, 1, 2, 3], path=tmp_path / "methods.png")
    bar = colour_bar(fig)
    panels = [ax for ax in fig.axes if ax is not bar]
    assert len(panels) == 4 * (1 + len(METHODS))
    assert [ax.get_title() for ax in panels[:4]] == ["plane", *METHODS]
    assert [panels[4 * row].get_title() for row in range(4)] == ["plane", "car", "bird", "cat"]
    [shown] = panels[4 * 2 + 3].get_images()  # row 2, the third method
    np.testing.assert_allclose(shown.get_array(), overlay(images[2], results["layercam"]["layer4"][2]), atol=1e-6)
    assert "blue → red" in bar.get_ylabel()
    assert [t.get_text() for t in bar.get_yticklabels()] == ["0: none", "1: strongest\nin this map"]
    assert smallest_text(fig) >= 8
    assert_png(tmp_path / "methods.png")


def test_method_layers_grid_shows_one_image_as_methods_by_layers():
    images = normalize(torch.rand(3, 3, 32, 32))
    results = fake_results(3)
    fig = plots.method_layers_grid(images, results, LAYERS, index=1)
    bar = colour_bar(fig)
    panels = [ax for ax in fig.axes if ax is not bar]
    assert len(panels) == len(METHODS) * 5
    assert [panels[5 * row].get_ylabel() for row in range(len(METHODS))] == METHODS
    assert [ax.get_title() for ax in panels[1:5]] == LAYERS
    [shown] = panels[5 * 2 + 4].get_images()
    np.testing.assert_allclose(shown.get_array(), overlay(images[1], results["layercam"]["layer4"][1]), atol=1e-6)
    assert smallest_text(fig) >= 8


def test_the_map_grids_refuse_missing_layers_and_too_few_maps():
    images = normalize(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="no layer 'layer9'"):
        plots.methods_grid(images, fake_results(2), "layer9")
    with pytest.raises(ValueError, match="hold 2 images, need 3"):
        plots.methods_grid(normalize(torch.rand(3, 3, 32, 32)), fake_results(2), "layer4")
    with pytest.raises(ValueError, match="outside"):
        plots.method_layers_grid(images, fake_results(2), LAYERS, index=2)


def curve(kind: str, level: float) -> FaithfulnessCurve:
    fractions = torch.linspace(0, 1, 5, dtype=torch.float64)
    probabilities = torch.full((2, 5), level, dtype=torch.float64)
    return FaithfulnessCurve(kind, fractions, probabilities, torch.tensor([0, 1]))


def test_faithfulness_curves_draw_each_maps_mean_curve_with_its_area(tmp_path):
    deletion = {"gradcam @ layer4": curve("deletion", 0.2), "random map": curve("deletion", 0.6)}
    insertion = {"gradcam @ layer4": curve("insertion", 0.8), "random map": curve("insertion", 0.4)}
    fig = plots.faithfulness_curves(deletion, insertion, path=tmp_path / "curves.png")
    left, right = fig.axes
    assert [t.get_text() for t in left.get_legend().get_texts()] == ["gradcam @ layer4 (0.200)", "random map (0.600)"]
    assert left.get_legend().get_title().get_text() == "area: lower is better"
    assert right.get_legend().get_title().get_text() == "area: higher is better"
    assert [line.get_linestyle() for line in right.get_lines()] == ["-", "--"]
    np.testing.assert_allclose(right.get_lines()[0].get_ydata(), [0.8] * 5)
    assert smallest_text(fig) >= 8
    assert_png(tmp_path / "curves.png")


def test_curves_that_coincide_are_drawn_once_and_the_legend_names_every_map_they_belong_to():
    # at layer4 GradCAM, XGradCAM and HiResCAM give the same map, so the same curves: three colours drawn on top
    # of each other showed one
    deletion = {
        "gradcam @ layer4": curve("deletion", 0.2),
        "gradcam++ @ layer4": curve("deletion", 0.25),
        "xgradcam @ layer4": curve("deletion", 0.2),
        "hirescam @ layer4": curve("deletion", 0.2),
        "random map": curve("deletion", 0.6),
    }
    insertion = {name: curve("insertion", 1 - c.probabilities[0, 0].item()) for name, c in deletion.items()}
    fig = plots.faithfulness_curves(deletion, insertion)
    for ax in fig.axes:
        entries = [t.get_text() for t in ax.get_legend().get_texts()]
        assert len(ax.get_lines()) == len(entries) == 3
        assert entries[0].startswith("gradcam = xgradcam = hirescam @ layer4 (")
        assert entries[1].startswith("gradcam++ @ layer4 (") and entries[2].startswith("random map (")
        assert "=" in ax.get_legend().get_title().get_text()  # the title says what "=" means
    assert smallest_text(fig) >= 8


def test_curves_that_differ_are_not_merged():
    deletion = {"gradcam @ layer4": curve("deletion", 0.2), "xgradcam @ layer4": curve("deletion", 0.21)}
    fig = plots.faithfulness_curves(deletion, deletion)
    assert len(fig.axes[0].get_lines()) == 2


def test_a_map_keeps_its_colour_in_both_panels_when_only_one_panel_merges_curves():
    deletion = {"gradcam @ layer4": curve("deletion", 0.2), "layercam @ layer4": curve("deletion", 0.3)}
    deletion["random map"] = curve("deletion", 0.6)
    insertion = {"gradcam @ layer4": curve("insertion", 0.8), "layercam @ layer4": curve("insertion", 0.8)}
    insertion["random map"] = curve("insertion", 0.4)
    left, right = plots.faithfulness_curves(deletion, insertion).axes
    colour = {
        ax: {line.get_label().split(" (")[0]: line.get_color() for line in ax.get_lines()} for ax in (left, right)
    }
    assert colour[left]["random map"] == colour[right]["random map"]
    assert colour[left]["gradcam @ layer4"] == colour[right]["gradcam = layercam @ layer4"]
