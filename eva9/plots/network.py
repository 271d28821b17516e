"""The figure of a CIFAR ResNet drawn from the model itself: stem, stages of residual blocks, shortcuts, pool, linear.

Nothing is typed in: :func:`network_layout` runs one batch through the model with forward hooks and reads every
block's output shape, stride and shortcut off the modules and the pass; :func:`network_diagram` draws that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle
from torch import nn

from .base import MAX_WIDTH_IN, PathLike, _Figure, _finish

__all__ = ["Node", "network_layout", "network_diagram"]


@dataclass(frozen=True)
class Node:
    """One box of the diagram: its kind (input, stem, block, pool, linear), name, the stage it belongs to (blocks),
    its output shape without the batch (C×H×W or C), the block's stride and whether its shortcut is a projection."""

    kind: str
    name: str
    shape: tuple[int, ...]
    stage: str | None = None
    stride: int = 1
    projection: bool = False


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(str(n) for n in shape)


def network_layout(model: nn.Module, input_size: tuple[int, int, int] = (3, 32, 32)) -> list[Node]:
    """The model's boxes in order, with the shapes of one forward pass of a batch of two (the model's mode and
    weights are left as they were; every hook is removed, even when the pass fails).

    ``model`` is a CIFAR ResNet as :mod:`eva9.models` builds it: a stem (``conv1``, ``bn1``), stages
    ``layer1``… of blocks with a ``shortcut``, and a ``linear`` head after global average pooling."""
    stages = [(name, stage) for name, stage in model.named_children() if name.startswith("layer")]
    if not stages or not all(hasattr(model, part) for part in ("conv1", "bn1", "linear")):
        raise ValueError("network_layout draws a CIFAR ResNet of eva9.models: conv1, bn1, layer1…, linear")
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str, use_input: bool = False):
        def hook(module, inputs, output):
            shapes[name] = tuple((inputs[0] if use_input else output).shape[1:])

        return hook

    watched = [
        (n, model.get_submodule(m), i)
        for n, m, i in (("stem", "bn1", False), ("pool", "linear", True), ("linear", "linear", False))
    ]
    watched += [(f"{name}.{i}", block, False) for name, stage in stages for i, block in enumerate(stage.children())]
    handles = [module.register_forward_hook(record(name, use_input)) for name, module, use_input in watched]
    training = model.training
    try:
        parameter = next(model.parameters())
        model.eval()  # batch norm in training mode would update its running statistics
        with torch.no_grad():
            model(torch.zeros(2, *input_size, device=parameter.device, dtype=parameter.dtype))
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    nodes = [Node("input", "input", tuple(input_size)), Node("stem", "stem", shapes["stem"])]
    for name, stage in stages:
        for i, block in enumerate(stage.children()):
            conv1 = getattr(block, "conv1", None)
            stride = int(conv1.stride[0]) if isinstance(conv1, nn.Conv2d) else 1
            projection = len(getattr(block, "shortcut", ())) > 0
            nodes.append(Node("block", f"{name}.{i}", shapes[f"{name}.{i}"], name, stride, projection))
    nodes += [Node("pool", "avg pool", shapes["pool"]), Node("linear", "linear", shapes["linear"])]
    return nodes


def _label(node: Node) -> str:
    if node.kind == "input":
        return f"image\n{_shape(node.shape)}"
    if node.kind == "stem":
        return f"stem: 3×3 conv\nBN, ReLU\n{_shape(node.shape)}"
    if node.kind == "block":
        return f"block {node.name.removeprefix('layer')}\n{_shape(node.shape)}"
    if node.kind == "pool":
        return f"global avg\npool: {_shape(node.shape)}"
    return f"linear\n{node.shape[0]} scores"


_STAGE_TEXT: dict[str, Any] = {"ha": "center", "va": "bottom", "fontsize": 9, "style": "italic"}
_STRIDE_TEXT: dict[str, Any] = {"ha": "center", "va": "top", "fontsize": 8.5, "color": "tab:red", "zorder": 3}
_COLOURS = {"input": "#eeeeee", "stem": "#dbe9f6", "block": "#ffffff", "pool": "#e5f2e0", "linear": "#e5f2e0"}


def network_diagram(
    model: nn.Module,
    *,
    input_size: tuple[int, int, int] = (3, 32, 32),
    ncols: int = 6,
    path: PathLike | None = None,
) -> Figure:
    """The network as boxes in rows of ``ncols``: the image, the stem, every residual block with its output shape
    (C×H×W) and its shortcut drawn over it (solid: identity; dashed red: a 1×1 convolution), the blocks of each
    stage on a shaded band naming the stage and its channels, a red "stride 2" under each block that halves the
    resolution, then global average pooling and the linear layer. Shapes come from a forward pass
    (:func:`network_layout`)."""
    nodes = network_layout(model, input_size)
    ncols = max(2, ncols)
    rows = -(-len(nodes) // ncols)
    cell = MAX_WIDTH_IN / ncols
    box_w, box_h, row_h = 0.78 * cell, 0.82, 1.95
    fig = _Figure(figsize=(MAX_WIDTH_IN, row_h * rows + 0.1))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, MAX_WIDTH_IN)
    ax.set_ylim(0, row_h * rows + 0.1)
    ax.set_axis_off()
    centres = []
    for i in range(len(nodes)):
        row, col = divmod(i, ncols)
        x, y = (col + 0.5) * cell, row_h * (rows - row) - 1.05
        centres.append((x, y))
    # a shaded band per stage and row, named under the blocks
    for stage in dict.fromkeys(n.stage for n in nodes if n.stage):
        members = [i for i, n in enumerate(nodes) if n.stage == stage]
        for row in sorted({i // ncols for i in members}):
            in_row = [i for i in members if i // ncols == row]
            left, right = centres[in_row[0]][0] - cell / 2 + 0.04, centres[in_row[-1]][0] + cell / 2 - 0.04
            y = centres[in_row[0]][1]
            ax.add_patch(Rectangle((left, y - box_h / 2 - 0.5), right - left, box_h + 1.05, color="#f3f0e6", zorder=0))
            channels = nodes[in_row[-1]].shape[0]
            ax.text((left + right) / 2, y - box_h / 2 - 0.42, f"{stage}: {channels} channels", **_STAGE_TEXT)
    for i, (node, (x, y)) in enumerate(zip(nodes, centres)):
        edge = "tab:red" if node.stride > 1 else "black"
        ax.add_patch(
            FancyBboxPatch(
                (x - box_w / 2, y - box_h / 2),
                box_w,
                box_h,
                boxstyle="round,pad=0.02",
                facecolor=_COLOURS[node.kind],
                edgecolor=edge,
                linewidth=1.2,
                zorder=2,
            )
        )
        ax.text(x, y, _label(node), ha="center", va="center", fontsize=9, zorder=3)
        if node.stride > 1:
            before = nodes[i - 1].shape
            ax.text(x, y - box_h / 2 - 0.04, f"stride {node.stride}: {before[1]}→{node.shape[1]}", **_STRIDE_TEXT)
        if node.kind == "block":  # the shortcut: from the block's input to the addition at its output
            start, end = (x - box_w / 2 - 0.05, y + box_h / 2 - 0.05), (x + box_w / 2 + 0.05, y + box_h / 2 - 0.05)
            ax.add_patch(
                FancyArrowPatch(
                    start,
                    end,
                    connectionstyle="arc3,rad=-0.55",
                    arrowstyle="-|>",
                    mutation_scale=8,
                    linestyle="--" if node.projection else "-",
                    color="tab:red" if node.projection else "0.35",
                    linewidth=1.1,
                    zorder=1,
                )
            )
            if node.projection:
                ax.text(x, y + box_h / 2 + 0.3, "1×1 conv", ha="center", va="bottom", fontsize=8.5, color="tab:red")
        if i + 1 < len(nodes):  # the arrow to the next box; at a row's end, round the right, back under the row
            nx, ny = centres[i + 1]
            arrow = {"arrowstyle": "-|>", "lw": 1, "color": "black"}
            if ny == y:
                ax.annotate("", (nx - box_w / 2, y), (x + box_w / 2, y), arrowprops=arrow)
            else:
                side, gap, margin = x + cell / 2 - 0.02, y - box_h / 2 - 0.53, 0.03
                ax.plot([x + box_w / 2, side, side, margin, margin], [y, y, gap, gap, ny], color="black", lw=1)
                ax.annotate("", (nx - box_w / 2, ny), (margin, ny), arrowprops=arrow)
    shortcuts = [
        Line2D([], [], color="0.35", linewidth=1.5, label="shortcut: identity"),
        Line2D([], [], color="tab:red", linestyle="--", linewidth=1.5, label="shortcut: 1×1 convolution, stride 2"),
    ]
    # above the last row's last boxes (the head), where nothing else is drawn
    ax.legend(
        handles=shortcuts,
        loc="upper right",
        bbox_to_anchor=(MAX_WIDTH_IN - 0.05, centres[-1][1] + box_h / 2 + 0.62),
        bbox_transform=ax.transData,
        fontsize=10,
        handlelength=2.5,
        frameon=False,
        borderaxespad=0,
    )
    return _finish(fig, path)
