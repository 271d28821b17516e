"""Figures render headless, have the panels and titles the course shows, save PNGs, and leave pyplot alone."""

from __future__ import annotations

import copy
import json

import matplotlib

matplotlib.use("Agg")  # this test process only: render without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.collections import QuadMesh  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import nn  # noqa: E402

from eva9 import (
    plots,  # noqa: E402
    transforms,  # noqa: E402
)
from eva9.data import MEAN, STD  # noqa: E402
from eva9.gradcam import GradCAM  # noqa: E402
from eva9.train import History  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def normalize(images: torch.Tensor) -> torch.Tensor:
    return (images - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def assert_png(path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC


@pytest.fixture(autouse=True)
def pyplot_untouched():
    """No figure function may leave a figure in pyplot's global state."""
    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before


def history_dict(n: int = 4) -> dict:
    return {
        "epochs": [
            {
                "epoch": i + 1,
                "train_loss": 2.0 - 0.3 * i,
                "train_acc": 0.4 + 0.1 * i,
                "test_loss": 1.9 - 0.3 * i,
                "test_acc": 0.45 + 0.1 * i,
                "lr": 0.01,
                "seconds": 1.0,
            }
            for i in range(n)
        ]
    }


# ------------------------------------------------------------------------------------------------ image grid


def test_image_grid_titles_samples_with_their_class(tmp_path):
    images = normalize(torch.rand(7, 3, 32, 32))
    fig = plots.image_grid(images, [0, 1, 2, 3, 4, 5, 9], ncols=5, path=tmp_path / "grid.png")
    assert isinstance(fig, Figure) and len(fig.axes) == 7  # two rows of five, the three spare cells removed
    assert [ax.get_title() for ax in fig.axes] == ["plane", "car", "bird", "cat", "deer", "dog", "truck"]
    assert_png(tmp_path / "grid.png")


def test_image_grid_titles_mistakes_true_arrow_predicted_with_confidence():
    images = normalize(torch.rand(3, 3, 32, 32))
    fig = plots.image_grid(images, [3, 5, 0], preds=torch.tensor([5, 5, 8]), confidences=[0.934, 0.8, 0.51])
    assert [ax.get_title() for ax in fig.axes] == ["cat → dog (0.93)", "dog", "plane → ship (0.51)"]


def test_image_grid_shows_the_denormalized_image():
    picture = torch.rand(1, 3, 8, 8)
    fig = plots.image_grid(normalize(picture), [0])
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), picture[0].permute(1, 2, 0).numpy(), atol=1e-5)
    fig = plots.image_grid(picture, [0], normalized=False)
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), picture[0].permute(1, 2, 0).numpy(), atol=1e-6)


def test_image_grid_draws_into_given_axes():
    fig = Figure()
    axes = fig.subplots(1, 3)
    assert plots.image_grid(normalize(torch.rand(2, 3, 8, 8)), [1, 2], axes=axes) is fig
    assert [ax.get_title() for ax in axes] == ["car", "bird", ""]


def test_image_grid_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="2 labels for 3 images"):
        plots.image_grid(torch.zeros(3, 3, 8, 8), [0, 1])
    with pytest.raises(ValueError, match="1 predictions for 2 images"):
        plots.image_grid(torch.zeros(2, 3, 8, 8), [0, 1], preds=[0])
    with pytest.raises(ValueError, match="class 12"):
        plots.image_grid(torch.zeros(1, 3, 8, 8), [12])


# ------------------------------------------------------------------------------------------ augmentation grid


def test_augmentation_grid_shows_the_test_view_then_n_train_draws(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    fig = plots.augmentation_grid(
        image, transforms.train_transforms(), transforms.test_transforms(), n=5, path=tmp_path / "aug.png"
    )
    assert len(fig.axes) == 6 and fig.axes[0].get_title() == "test view"
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), image / 255, atol=1e-4)
    draws = [ax.images[0].get_array() for ax in fig.axes[1:]]
    assert any(not np.allclose(draws[0], d) for d in draws[1:])  # the train pipeline is random
    assert {ax.images[0].get_interpolation() for ax in fig.axes} == {"nearest"}, "pixels drawn as sharp squares"
    assert_png(tmp_path / "aug.png")


def test_augmentation_grid_titles_each_draw_with_the_parameters_albumentations_applied():
    images = [np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8) for i in range(3)]
    pipeline = transforms.train_transforms()
    fig = plots.augmentation_grid(images, pipeline, transforms.test_transforms(), n=6, labels=[1, 4, 7], seed=3)
    assert [ax.get_title() for ax in fig.axes[::7]] == ["car\n(test view)", "deer\n(test view)", "horse\n(test view)"]
    replay = copy.deepcopy(pipeline)
    replay.set_random_seed(3)
    titles = set()
    for row, image in enumerate(images):
        for ax in fig.axes[row * 7 + 1 : row * 7 + 7]:
            d = transforms.draw(replay, image)
            np.testing.assert_allclose(ax.images[0].get_array(), transforms.denormalize(d.image).permute(1, 2, 0))
            moved, flip, hole = ax.get_title().split("\n")
            assert flip == ("flipped" if d.flipped else "not flipped") and hole == ("hole" if d.holes else "no hole")
            right = -d.shift[0] if d.flipped else d.shift[0]  # where the photograph's frame went, as shown
            expected = [f"{abs(right)} {'right' if right > 0 else 'left'}"] * (right != 0)
            expected += [f"{abs(d.shift[1])} {'down' if d.shift[1] > 0 else 'up'}"] * (d.shift[1] != 0)
            assert moved == (", ".join(expected) or "not moved")
            (frame,) = ax.patches
            assert frame.get_xy() == (right - 0.5, d.shift[1] - 0.5) and frame.get_width() == 32
            titles.add((flip, hole))
    assert len(titles) == 4, "flipped or not, holed or not: all four turn up in 18 draws"


def test_augmentation_grid_draws_are_reproducible_with_a_seed_and_take_a_tensor_image():
    image = torch.rand(3, 32, 32)
    pipeline = transforms.train_transforms()
    first = plots.augmentation_grid(image, pipeline, transforms.test_transforms(), n=3, seed=7)
    again = plots.augmentation_grid(image, pipeline, transforms.test_transforms(), n=3, seed=7)
    for a, b in zip(first.axes, again.axes):
        np.testing.assert_array_equal(a.images[0].get_array(), b.images[0].get_array())


def test_augmentation_grid_refuses_a_float_array_and_n_below_one():
    with pytest.raises(ValueError, match="uint8"):
        plots.augmentation_grid(np.zeros((32, 32, 3)), transforms.train_transforms(), transforms.test_transforms())
    with pytest.raises(ValueError, match="n must be"):
        plots.augmentation_grid(
            np.zeros((32, 32, 3), np.uint8), transforms.train_transforms(), transforms.test_transforms(), n=0
        )
    with pytest.raises(ValueError, match="2 labels for 1 images"):
        plots.augmentation_grid(
            [torch.rand(3, 32, 32)], transforms.train_transforms(), transforms.test_transforms(), labels=[0, 1]
        )


# ------------------------------------------------------------------------------------------- training curves


@pytest.mark.parametrize("source", ["History", "dict", "file", "run folder"])
def test_training_curves_plot_loss_and_accuracy_with_the_target_line(tmp_path, source):
    data = history_dict()
    (tmp_path / "history.json").write_text(json.dumps(data))
    history = {
        "History": History.from_dict(data),
        "dict": data,
        "file": tmp_path / "history.json",
        "run folder": str(tmp_path),
    }[source]
    fig = plots.training_curves(history, path=tmp_path / "curves.png")
    loss_ax, acc_ax = fig.axes
    assert (loss_ax.get_title(), acc_ax.get_title()) == ("Loss", "Accuracy")
    lines = {line.get_label(): line for line in acc_ax.get_lines()}
    assert set(lines) == {"train", "test", "target 87%"}
    np.testing.assert_allclose(lines["test"].get_ydata(), [45, 55, 65, 75])
    np.testing.assert_allclose(lines["target 87%"].get_ydata(), [87, 87])
    np.testing.assert_allclose(lines["train"].get_xdata(), [1, 2, 3, 4])
    assert [line.get_label() for line in loss_ax.get_lines()] == [
        "train: training criterion, mean over the epoch",
        "test: cross-entropy after the epoch",
    ]
    assert_png(tmp_path / "curves.png")


def test_training_curves_say_which_loss_is_label_smoothed(tmp_path):
    data = history_dict()
    recorded = {"config": {"label_smoothing": 0.1}, "epochs": data["epochs"]}  # a recorded run
    for history, smoothing in ((data, 0.1), (recorded, None)):
        fig = plots.training_curves(history, label_smoothing=smoothing)
        train_loss, test_loss = (line.get_label() for line in fig.axes[0].get_lines())
        assert train_loss == "train: cross-entropy label-smoothed 0.1, mean over the epoch"
        assert test_loss == "test: cross-entropy after the epoch"
    (tmp_path / "history.json").write_text(json.dumps(data))
    (tmp_path / "config.json").write_text(json.dumps({"label_smoothing": 0.0}))  # a run folder: its own config
    fig = plots.training_curves(tmp_path)
    assert fig.axes[0].get_lines()[0].get_label() == "train: cross-entropy, mean over the epoch"
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "train: cross-entropy, mean over the epoch",
        "test: cross-entropy after the epoch",
    ]


def live_cpu_run() -> dict:
    # The live cpu run: test loss 6.2 after epoch 1, then 1.9, 1.7, 1.6.
    losses = [(2.30, 6.21), (2.07, 1.87), (1.89, 1.65), (1.78, 1.60)]
    rows = [
        {"epoch": i + 1, "train_loss": tr, "test_loss": te, "train_acc": 0.1 * (i + 1), "test_acc": 0.1 * (i + 1)}
        for i, (tr, te) in enumerate(losses)
    ]
    return {"epochs": rows}


def test_training_curves_draw_an_isolated_high_loss_off_the_scale_and_mark_it():
    # a linear axis from 0 to 6.2 left the other seven losses (1.6 to 2.3) in a sixth of its height
    loss_ax = plots.training_curves(live_cpu_run(), label_smoothing=0.1).axes[0]
    bottom, top = loss_ax.get_ylim()
    assert loss_ax.get_yscale() == "linear"
    assert 2.30 < top < 6.21 and bottom < 1.60
    assert (2.30 - 1.60) / (top - bottom) > 0.6  # the rest of the curve fills most of the axes
    (mark,) = off_scale_marks(loss_ax)  # a marker on the top edge where the test loss left it, named in the legend
    assert mark.get_label() == "test loss 6.21 at epoch 1, off the scale"
    assert list(mark.get_xdata()) == [1] and list(mark.get_ydata()) == [top] and not mark.get_clip_on()
    assert mark.get_label() in [t.get_text() for t in loss_ax.get_legend().get_texts()]


def off_scale_marks(ax) -> list:
    return [line for line in ax.get_lines() if "off the scale" in line.get_label()]


def test_training_curves_put_a_loss_that_spans_orders_of_magnitude_on_a_log_scale():
    data = history_dict()
    assert plots.training_curves(data).axes[0].get_yscale() == "linear"
    assert not off_scale_marks(plots.training_curves(data).axes[0])
    data["epochs"][0]["test_loss"] = 103.6  # one spike (a first epoch at too high an lr): off the scale, marked
    loss_ax = plots.training_curves(data).axes[0]
    assert loss_ax.get_yscale() == "linear" and loss_ax.get_ylim()[1] < 103.6
    assert [m.get_label() for m in off_scale_marks(loss_ax)] == ["test loss 104 at epoch 1, off the scale"]
    falling = history_dict(30)  # a long run whose losses fall steadily from 2.3 to 0.1: no spike, but 23 times
    for i, row in enumerate(falling["epochs"]):
        row["train_loss"] = row["test_loss"] = 2.3 * 0.9**i
    loss_ax = plots.training_curves(falling).axes[0]
    assert loss_ax.get_yscale() == "log" and "log scale" in loss_ax.get_ylabel()
    assert not off_scale_marks(loss_ax)


def test_training_curves_mark_whole_epochs_only():
    fig = plots.training_curves(history_dict())  # four epochs: matplotlib alone would put ticks at 1.5, 2.5, ...
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)


def test_training_curves_take_a_recorded_run_as_results_stores_it_and_read_its_label_smoothing():
    recorded = {"profile": "seed", "config": {"label_smoothing": 0.0}, "history": history_dict()}  # results/seed.json
    fig = plots.training_curves(recorded)
    assert fig.axes[0].get_lines()[0].get_label() == "train: cross-entropy, mean over the epoch"
    np.testing.assert_allclose(fig.axes[1].get_lines()[1].get_ydata(), [45, 55, 65, 75])


def test_the_loss_legend_covers_no_point_of_a_run_whose_first_test_loss_is_high():
    # "best" put the legend across the live cpu run's fall
    fig = plots.training_curves(live_cpu_run(), label_smoothing=0.1)
    FigureCanvasAgg(fig).draw()  # lay the figure out, as the book's PNG is
    loss_ax = fig.axes[0]
    box = loss_ax.get_legend().get_window_extent()
    for line in loss_ax.get_lines():
        points = loss_ax.transData.transform(np.column_stack([line.get_xdata(), line.get_ydata()]))
        segments = [
            points[i] + t * (points[i + 1] - points[i]) for i in range(len(points) - 1) for t in np.linspace(0, 1, 50)
        ]
        assert not any(box.contains(x, y) for x, y in segments), line.get_label()


def test_training_curves_refuse_empty_or_incomplete_histories(tmp_path):
    with pytest.raises(ValueError, match="no epochs"):
        plots.training_curves({"epochs": []})
    (tmp_path / "history.json").write_text(json.dumps({"epochs": []}))
    with pytest.raises(ValueError, match="no epochs"):
        plots.training_curves(tmp_path)
    with pytest.raises(ValueError, match="test_acc"):
        plots.training_curves({"epochs": [{"epoch": 1, "train_loss": 1, "train_acc": 0.5, "test_loss": 1}]})
    with pytest.raises(ValueError, match="History"):
        plots.training_curves([1, 2, 3])


# ---------------------------------------------------------------------------------------------- GradCAM grid


def test_gradcam_grid_has_a_row_per_image_and_a_column_per_layer(tmp_path):
    layers = ["layer1", "layer2", "layer3", "layer4"]
    cams = {layer: torch.rand(5, 32, 32) for layer in layers}
    images = normalize(torch.rand(5, 3, 32, 32))
    fig = plots.gradcam_grid(images, cams, [0, 1, 2, 3, 4], [0, 1, 5, 3, 9], layers, path=tmp_path / "cam.png")
    assert len(fig.axes) == 25 + 1  # 5 images × (original + 4 layers), as the course shows, and the colour bar
    assert [ax.get_title() for ax in fig.axes[:5]] == ["true: plane\npred: plane"] + layers
    assert [fig.axes[5 * row].get_title() for row in range(5)] == [
        "true: plane\npred: plane",
        "true: car\npred: car",
        "true: bird\npred: dog",
        "true: cat\npred: cat",
        "true: deer\npred: truck",
    ]
    assert all(ax.get_title() == "" for row in range(1, 5) for ax in fig.axes[5 * row + 1 : 5 * row + 5])
    assert_png(tmp_path / "cam.png")


def test_gradcam_grid_has_a_colour_bar_saying_what_blue_and_red_mean():
    fig = plots.gradcam_grid(normalize(torch.rand(2, 3, 8, 8)), {"layer4": torch.rand(2, 8, 8)}, [0, 1])
    bar = fig.axes[-1]
    label = bar.get_xlabel()
    assert "blue 0: no evidence for the class" in label and "red 1: its strongest evidence" in label
    assert bar.get_xlim() == (0, 1)  # the maps' range
    [scale] = [c for c in bar.collections if isinstance(c, QuadMesh)]  # the bar's colours
    assert scale.cmap.name == "jet"  # the overlay's colormap
    assert [float(t) for t in bar.get_xticks()] == [0.0, 0.5, 1.0]


def test_gradcam_grid_cells_are_the_overlay_of_their_rows_image_and_their_columns_layer():
    from eva9.gradcam import overlay

    cams = {"layer2": torch.rand(3, 32, 32), "layer4": torch.rand(3, 32, 32)}
    images = normalize(torch.rand(3, 3, 32, 32))
    layers = ["layer4", "layer2"]  # not the mapping's order
    fig = plots.gradcam_grid(images, cams, [0, 1, 2], [0, 1, 2], layers, alpha=0.3)
    for row in range(3):
        for col, layer in enumerate(layers, start=1):
            [shown] = fig.axes[3 * row + col].get_images()
            expected = overlay(images[row], cams[layer][row], alpha=0.3)
            np.testing.assert_allclose(
                np.asarray(shown.get_array()), expected, atol=1e-6, err_msg=f"row {row}, column {layer}"
            )


def test_gradcam_grid_colour_bar_spans_zero_to_one_in_the_maps_colormap():
    cams = {"layer3": torch.rand(2, 32, 32), "layer4": torch.rand(2, 32, 32)}
    images = normalize(torch.rand(2, 3, 32, 32))
    fig = plots.gradcam_grid(images, cams, [0, 1], colormap="viridis")
    assert len(fig.axes) == 7  # 2 × (image + 2 layers), and the bar
    [bar] = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    scale = bar._colorbar.mappable
    assert (scale.norm.vmin, scale.norm.vmax) == (0.0, 1.0)
    assert scale.get_cmap().name == "viridis"


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 10)

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)))


def test_gradcam_grid_takes_predictions_and_layers_from_a_gradcam_result():
    torch.manual_seed(0)
    images = normalize(torch.rand(2, 3, 16, 16))
    with GradCAM(Tiny(), ["conv"]) as cam:
        result = cam(images)
    fig = plots.gradcam_grid(images, result, [0, 1])
    assert len(fig.axes) == 4 + 1  # and the colour bar
    names = [plots.SHORT_NAMES[p] for p in result.predictions.tolist()]
    assert fig.axes[0].get_title() == f"true: plane\npred: {names[0]}"
    assert fig.axes[1].get_title() == "conv"


def test_gradcam_grid_refuses_unknown_layers_and_mismatched_counts():
    cams = {"layer1": torch.rand(2, 8, 8)}
    images = normalize(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="layer4"):
        plots.gradcam_grid(images, cams, [0, 1], [0, 1], ["layer4"])
    with pytest.raises(ValueError, match="1 maps for 2 images"):
        plots.gradcam_grid(images, {"layer1": torch.rand(1, 8, 8)}, [0, 1], [0, 1])


# ------------------------------------------------------------------------------------ accuracy and confusion


def test_class_accuracy_bars_one_bar_per_class_in_percent(tmp_path):
    acc = np.linspace(0.5, 0.95, 10)
    acc[4] = np.nan
    fig = plots.class_accuracy_bars(acc, path=tmp_path / "acc.png")
    (ax,) = fig.axes
    heights = [bar.get_height() for bar in ax.patches]
    np.testing.assert_allclose(heights, np.nan_to_num(100 * acc))
    assert [t.get_text() for t in ax.get_xticklabels()] == list(plots.SHORT_NAMES)
    assert ax.get_title() == "Accuracy per class"
    assert "n/a" in [t.get_text() for t in ax.texts]
    assert_png(tmp_path / "acc.png")


def test_the_mean_is_named_where_it_covers_no_bar():
    # the "mean" legend sat in the lower right corner, over the truck bar
    fast = [0.933, 0.962, 0.863, 0.797, 0.91, 0.845, 0.924, 0.939, 0.948, 0.942]  # results/fast.json
    fig = plots.class_accuracy_bars(fast)
    FigureCanvasAgg(fig).draw()
    (ax,) = fig.axes
    bars = [bar.get_window_extent() for bar in ax.patches]
    legend = ax.get_legend()
    names = [t for t in ax.texts if "mean" in t.get_text()] + ([legend] if legend is not None else [])
    for name in names:
        assert not any(name.get_window_extent().overlaps(bar) for bar in bars)
    assert names and any("90.6" in t.get_text() for t in ax.texts)  # the mean, named with its value


def test_the_target_line_lies_inside_the_accuracy_axes_of_a_run_that_stays_below_it():
    # the recorded 8-epoch CPU run ends at 85 %: its 87 % line lay on the top border of the appendix's plot
    data = history_dict()
    for row, acc in zip(data["epochs"], (0.40, 0.75, 0.83, 0.85)):
        row["test_acc"] = acc
    acc_ax = plots.training_curves(data).axes[1]
    bottom, top = acc_ax.get_ylim()
    assert top - 87 >= 0.04 * (top - bottom)


def test_confusion_matrix_heatmap_writes_every_count_in_its_cell(tmp_path):
    cm = np.arange(100).reshape(10, 10)
    fig = plots.confusion_matrix_heatmap(cm, path=tmp_path / "cm.png")
    (ax,) = fig.axes
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert cells == {(t, p): str(cm[t, p]) for t in range(10) for p in range(10)}
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted", "true")
    assert_png(tmp_path / "cm.png")
    with pytest.raises(ValueError, match="10×10"):
        plots.confusion_matrix_heatmap(np.zeros((3, 3)))


def test_new_figures_render_as_png_for_jupyter():
    fig = plots.class_accuracy_bars(np.full(10, 0.9))
    assert fig._repr_png_()[:8] == PNG_MAGIC


def test_mistake_titles_have_enough_decimals_for_different_confidences_to_read_differently():
    images = normalize(torch.rand(4, 3, 8, 8))
    fig = plots.image_grid(images, [3, 3, 3, 3], [5, 5, 5, 5], [0.9991, 0.9987, 0.999, 0.5])
    assert [ax.get_title() for ax in fig.axes] == [
        "cat → dog (0.9991)",
        "cat → dog (0.9987)",
        "cat → dog (0.9990)",
        "cat → dog (0.5000)",
    ]
    equal = plots.image_grid(images[:2], [3, 3], [5, 5], [0.97, 0.97])  # equal values need no more digits
    assert [ax.get_title() for ax in equal.axes] == ["cat → dog (0.97)", "cat → dog (0.97)"]


def test_blanked_grid_labels_each_row_with_its_class_and_each_column_with_its_mask():
    images = normalize(torch.rand(3, 3, 8, 8))
    masks = {"top": torch.zeros(3, 8, 8, dtype=torch.bool), "random": torch.ones(3, 8, 8, dtype=torch.bool)}
    fig = plots.blanked_grid(images, masks, labels=[0, 2, 7])
    assert [fig.axes[3 * row].get_ylabel() for row in range(3)] == ["plane", "bird", "horse"]
    assert [ax.get_title() for ax in fig.axes[:3]] == ["intact", "top", "random"]
    unlabelled = plots.blanked_grid(images, masks)
    assert [unlabelled.axes[3 * row].get_ylabel() for row in range(3)] == ["image 1", "image 2", "image 3"]
