"""eva9.models and eva9.utils: the CIFAR ResNet18's size and shapes, that it trains, and the run helpers."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from eva9.models import resnet18, summary
from eva9.utils import pick_device, seed_everything


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return resnet18()


def test_resnet18_has_exactly_11_173_962_parameters(model):
    assert sum(p.numel() for p in model.parameters()) == 11_173_962
    assert sum(p.numel() for p in resnet18(num_classes=100).parameters()) == 11_173_962 + 90 * 513


def test_stages_output_the_cifar_resnet_shapes(model):
    shapes = {}
    hooks = [
        getattr(model, name).register_forward_hook(lambda _m, _i, out, name=name: shapes.__setitem__(name, out.shape))
        for name in ("layer1", "layer2", "layer3", "layer4")
    ]
    try:
        with torch.no_grad():
            logits = model.eval()(torch.randn(2, 3, 32, 32))
    finally:
        for hook in hooks:
            hook.remove()
    assert logits.shape == (2, 10)
    assert shapes == {
        "layer1": (2, 64, 32, 32),
        "layer2": (2, 128, 16, 16),
        "layer3": (2, 256, 8, 8),
        "layer4": (2, 512, 4, 4),
    }


def test_forward_and_backward_on_cpu_reach_every_parameter():
    torch.manual_seed(0)
    net = resnet18().train()
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([0, 3])
    loss = nn.functional.cross_entropy(net(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert net.conv1.weight.grad.abs().sum() > 0 and net.linear.weight.grad.abs().sum() > 0


def test_summary_prints_a_table_with_the_parameter_total(model, capsys):
    stats = summary(model)
    printed = capsys.readouterr().out
    assert "Total params: 11,173,962" in printed
    assert "[1, 512, 4, 4]" in printed and "layer4" in printed
    assert stats.total_params == 11_173_962


def test_pick_device_honours_an_explicit_choice():
    assert pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda")


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_pick_device_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert pick_device() == pick_device("auto") == torch.device(expected)


def test_seed_everything_repeats_python_numpy_and_torch_draws():
    def draws():
        return (
            random.random(),
            np.random.rand(3).tolist(),
            torch.rand(3).tolist(),
            resnet18().linear.weight[0, :4].tolist(),
        )

    seed_everything(7)
    first = draws()
    seed_everything(7)
    assert draws() == first
    seed_everything(8)
    assert draws() != first
