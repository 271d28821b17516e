"""The learning-rate range test (eva9.train.lr_find): an exponential ramp, a suggestion inside it, state restored
bitwise, bad bounds refused."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from eva9 import plots
from eva9.train import lr_find, profile, steepest_descent


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )


def tiny_loader(n: int = 200, batch_size: int = 20) -> DataLoader:
    g = torch.Generator().manual_seed(7)
    y = torch.arange(n) % 10
    x = torch.randn(n, 3, 8, 8, generator=g) * 0.5 + y.view(-1, 1, 1, 1) * 0.3  # learnable
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, drop_last=True, generator=g)


def config(**overrides):
    return profile("fast", **{"device": "cpu", "workers": 0, **overrides})


def state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    return copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())


def test_the_ramp_is_exponential_between_the_bounds_and_the_suggestion_lies_in_it():
    found = lr_find(config(), start=1e-4, end=100.0, steps=60, model=tiny_model(), train_loader=tiny_loader())
    assert found.lrs[0] == pytest.approx(1e-4)
    ratios = [b / a for a, b in zip(found.lrs, found.lrs[1:])]
    assert all(r == pytest.approx((100.0 / 1e-4) ** (1 / 59)) for r in ratios)  # one constant factor per step
    assert len(found.losses) == len(found.smoothed) == len(found.lrs)
    assert found.diverged and len(found.lrs) < 60  # lr 100 blows this model up: the test stopped early
    assert found.suggestion is not None and found.lrs[0] < found.suggestion < found.lrs[-1]
    i = found.lrs.index(found.suggestion)
    assert found.smoothed[i] < found.smoothed[0]  # the suggestion lies on the descent, not on the climb


def test_model_and_optimizer_state_are_restored_bitwise():
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loader = tiny_loader()
    for images, labels in list(loader)[:3]:  # momentum buffers and batch-norm statistics that are not fresh
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    model.eval()
    weights, optimizer_state = state(model, optimizer)
    found = lr_find(config(), start=1e-3, end=10.0, steps=15, model=model, optimizer=optimizer, train_loader=loader)
    assert len(found.lrs) >= 5  # it did train (and so changed everything) before restoring
    assert not model.training  # the mode is restored too
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    after = optimizer.state_dict()
    assert after["param_groups"] == optimizer_state["param_groups"]  # lr 0.05 again, not the ramp's last
    for key, saved in optimizer_state["state"].items():
        assert torch.equal(after["state"][key]["momentum_buffer"], saved["momentum_buffer"])
    assert all(p.is_contiguous() for p in model.parameters())  # the memory format it had (not channels-last)


def test_steepest_descent_picks_the_fastest_fall_before_the_minimum():
    lrs = [10 ** (k / 10) for k in range(-40, 11)]  # 1e-4 .. 10
    smoothed = [2.3 - 2.0 / (1 + math.exp(-3 * (math.log10(lr) + 1.5))) for lr in lrs]  # falls fastest at 10**-1.5
    smoothed[-5:] = [smoothed[-6] + k for k in range(1, 6)]  # then climbs
    assert steepest_descent(lrs, smoothed) == pytest.approx(10**-1.5)
    assert steepest_descent(lrs[:2], smoothed[:2]) is None  # too few points to say
    short = [2.3, 2.25, 2.1, 2.6, 3.5, 5.0, 7.0, 9.0, 12.0, 15.0]  # a descent of three points, then the climb
    assert steepest_descent(lrs[:10], short) in lrs[:3]  # the skipped start is kept when the descent is that short


@pytest.mark.parametrize(
    ("bounds", "message"),
    [
        (dict(start=0.0), "start=0.0 must be a finite learning rate > 0"),
        (dict(start=1.0, end=0.1), "end=0.1 must be a finite learning rate above start=1.0"),
        (dict(end=math.inf), "end=inf must be"),
        (dict(steps=1), "steps=1 must be a whole number >= 2"),
    ],
)
def test_bad_bounds_are_refused_in_one_line_before_any_work(bounds, message):
    with pytest.raises(ValueError, match=message) as error:
        lr_find(config(data_dir="/nonexistent"), **bounds)  # no data is read: the bounds fail first
    assert "\n" not in str(error.value)


def test_the_range_test_figure_shows_both_curves_the_suggestion_and_the_peak(tmp_path):
    found = lr_find(config(), start=1e-4, end=100.0, steps=40, model=tiny_model(), train_loader=tiny_loader())
    fig = plots.lr_range_test(found, peak=0.2, path=tmp_path / "lr.png")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[:2] == ["loss of each step", "smoothed loss"]
    assert any(label.startswith("steepest descent: lr") for label in labels)
    assert "the profile's lr 0.2" in labels
    assert (tmp_path / "lr.png").stat().st_size > 0
