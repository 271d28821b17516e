"""ResNet18 for 32×32 CIFAR images, written as literally as its diagram.

This is the widely used CIFAR adaptation of the ImageNet ResNet18 (as in kuangliu/pytorch-cifar), not one of He
et al.'s CIFAR ResNets (ResNet-20 … 110, with 16/32/64 channels). Its layers are those of torchvision's ImageNet
ResNet18 except the stem: one 3×3 stride-1 convolution and no max-pool, so a 32×32 image reaches ``layer4`` as a
4×4 map instead of vanishing to 1×1. Layer names (``shortcut``, ``linear``) and initialisation (PyTorch's
defaults) differ from torchvision's, so state_dicts are not interchangeable.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BasicBlock", "ResNet", "resnet18", "resnet34", "summary"]

if TYPE_CHECKING:
    from .weights import Weights


# The book includes BasicBlock and keeps its lines within its page.
# fmt: off
class BasicBlock(nn.Module):
    """Two 3×3 convolutions with batch norm, added to a shortcut before the last ReLU.

    The shortcut is the identity, or a 1×1 convolution with batch norm
    where the shape changes.
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False
        )
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, kernel_size=3, stride=1, padding=1, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))
# fmt: on


class ResNet(nn.Module):
    """Stem, four stages of residual blocks (widths 64, 128, 256, 512), global average pool, linear head."""

    def __init__(self, block: type[BasicBlock], num_blocks: list[int], num_classes: int = 10) -> None:
        super().__init__()
        self.in_planes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = self._make_stage(block, 64, num_blocks[0], stride=1)
        self.layer2 = self._make_stage(block, 128, num_blocks[1], stride=2)
        self.layer3 = self._make_stage(block, 256, num_blocks[2], stride=2)
        self.layer4 = self._make_stage(block, 512, num_blocks[3], stride=2)
        self.linear = nn.Linear(512 * block.expansion, num_classes)

    def _make_stage(self, block: type[BasicBlock], planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for block_stride in [stride] + [1] * (num_blocks - 1):
            layers.append(block(self.in_planes, planes, block_stride))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))  # 64×32×32
        out = self.layer1(out)  # 64×32×32
        out = self.layer2(out)  # 128×16×16
        out = self.layer3(out)  # 256×8×8
        out = self.layer4(out)  # 512×4×4
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)  # 512
        return self.linear(out)


def resnet18(
    num_classes: int = 10, weights: str | os.PathLike | Weights | None = None, progress: bool = True
) -> ResNet:
    """The CIFAR ResNet18: BasicBlocks [2, 2, 2, 2], 11,173,962 parameters for ten classes.

    ``weights``: None for random initialisation; the name of published weights (``"seed"``, ``"fast"``, ... — see
    ``eva9.weights.published()``), found in the checkout, the hub cache or downloaded and hash-checked; or the path
    of a ``.pt`` state_dict (or of a run folder holding ``model.pt``). Weights load into a float32 model, which
    comes back in training mode as torchvision's do: call ``.eval()`` before predicting.
    """
    model = ResNet(BasicBlock, [2, 2, 2, 2], num_classes)
    if weights is not None:
        _load_weights(model, weights, progress)
    return model


def resnet34(num_classes: int = 10) -> ResNet:
    """The CIFAR ResNet34: BasicBlocks [3, 4, 6, 3]."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes)


def _load_weights(model: nn.Module, weights, progress: bool) -> None:
    from .weights import WeightsError, load_state_dict

    state = load_state_dict(weights, progress=progress)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = " ".join(str(error).split())[:300]
        raise WeightsError(f"the weights {str(weights)!r} do not fit this network ({first})") from None


def summary(model: nn.Module, input_size: tuple[int, ...] = (1, 3, 32, 32), depth: int = 2, verbose: int = 1):
    """Print (verbose=1) and return a torchinfo table of output shapes and parameter counts."""
    from torchinfo import summary as torchinfo_summary

    device = next(model.parameters()).device
    return torchinfo_summary(
        model,
        input_size=input_size,
        depth=depth,
        device=device,
        col_names=("output_size", "num_params"),
        row_settings=("var_names",),
        verbose=verbose,
    )
