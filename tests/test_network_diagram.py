"""plots.network_diagram draws the CIFAR ResNet from the model itself: every box's shape is the one a forward pass
gives (computed here independently, stage by stage), the shortcuts and the stride-2 blocks are the model's own."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # this test process only: render without a display

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402
from torch import nn  # noqa: E402

from eva9 import models, plots  # noqa: E402


def stage_outputs(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Each block's output shape (without the batch), running the stem and the blocks one by one."""
    out, shapes = F.relu(model.bn1(model.conv1(torch.zeros(1, 3, 32, 32)))), {}
    for name in ("layer1", "layer2", "layer3", "layer4"):
        for i, block in enumerate(getattr(model, name)):
            out = block(out)
            shapes[f"{name}.{i}"] = tuple(out.shape[1:])
    return shapes


def texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


@pytest.mark.parametrize("build", [models.resnet18, models.resnet34], ids=["resnet18", "resnet34"])
def test_the_layout_has_the_shapes_of_a_forward_pass_and_the_models_strides_and_shortcuts(build):
    model = build().eval()
    nodes = plots.network_layout(model)
    assert [n.kind for n in nodes[:2]] == ["input", "stem"] and [n.kind for n in nodes[-2:]] == ["pool", "linear"]
    blocks = [n for n in nodes if n.kind == "block"]
    with torch.no_grad():
        assert {n.name: n.shape for n in blocks} == stage_outputs(model)
    assert nodes[1].shape == (64, 32, 32) and nodes[-2].shape == (512,) and nodes[-1].shape == (10,)
    for node in blocks:
        block = model.get_submodule(node.name)
        assert node.stride == block.conv1.stride[0]
        assert node.projection == (len(block.shortcut) > 0)
    # the first block of stages 2–4 halves the resolution and has the 1×1 projection
    assert [n.name for n in blocks if n.stride == 2] == ["layer2.0", "layer3.0", "layer4.0"]
    assert [n.name for n in blocks if n.projection] == ["layer2.0", "layer3.0", "layer4.0"]


def test_the_figure_names_every_shape_stage_downsampling_and_the_head():
    fig = plots.network_diagram(models.resnet18())
    shown = "\n".join(texts(fig))
    for name, shape in stage_outputs(models.resnet18().eval()).items():
        assert f"block {name.removeprefix('layer')}\n{'×'.join(map(str, shape))}" in shown
    for stage, channels in (("layer1", 64), ("layer2", 128), ("layer3", 256), ("layer4", 512)):
        assert f"{stage}: {channels} channels" in shown
    assert [t for t in texts(fig) if t.startswith("stride")] == ["stride 2: 32→16", "stride 2: 16→8", "stride 2: 8→4"]
    assert "image\n3×32×32" in shown and "global avg\npool: 512" in shown and "linear\n10 scores" in shown


def test_every_block_has_its_shortcut_drawn_dashed_where_it_is_a_projection():
    fig = plots.network_diagram(models.resnet18())
    arcs = [p for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)]
    assert len(arcs) == 8  # one per block
    assert sum(arc.get_linestyle() != "-" for arc in arcs) == 3
    assert texts(fig).count("1×1 conv") == 3


def test_the_head_follows_the_model_and_the_model_is_left_as_it_was():
    model = models.resnet18(num_classes=100).train()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    fig = plots.network_diagram(model)
    assert "linear\n100 scores" in texts(fig)
    assert model.training  # its mode restored, its batch-norm statistics untouched, no hook left behind
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert not any(module._forward_hooks for module in model.modules())


def test_a_model_that_is_not_a_cifar_resnet_is_refused_in_one_line():
    with pytest.raises(ValueError, match="CIFAR ResNet"):
        plots.network_layout(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()))


def test_the_shortcut_legend_draws_both_line_styles_at_the_size_of_the_box_labels():
    # it was one line of 8.5 pt grey text at the bottom corner, its line styles typed as "—" and "- -"
    fig = plots.network_diagram(models.resnet18())
    legend = fig.axes[0].get_legend()
    assert legend is not None
    entries = {text.get_text(): handle for text, handle in zip(legend.get_texts(), legend.legend_handles)}
    assert set(entries) == {"shortcut: identity", "shortcut: 1×1 convolution, stride 2"}
    assert entries["shortcut: identity"].get_linestyle() == "-"
    assert entries["shortcut: 1×1 convolution, stride 2"].get_linestyle() == "--"
    assert min(text.get_fontsize() for text in legend.get_texts()) >= 10
    FigureCanvasAgg(fig).draw()
    box = legend.get_window_extent()
    boxes = [p.get_window_extent() for p in fig.axes[0].patches if isinstance(p, FancyBboxPatch)]
    assert not any(box.overlaps(b) for b in boxes)  # it covers no box of the network
