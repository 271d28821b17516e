"""The learning-rate range test (eva9.train.lr_find): an exponential ramp, a suggestion inside it, state restored
bitwise, bad bounds refused."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from eva9 import plots
from eva9.train import lr_find, profile, read_range_test, steepest_descent


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
    assert steepest_descent(lrs[:10], short) is None  # its fall lies in the noisy start: too short to say


def ramp(steps: int, start: float = 1e-4, end: float = 10.0) -> list[float]:
    return [start * (end / start) ** (k / (steps - 1)) for k in range(steps)]


def dip_then_blow_up(lr: float) -> float:
    """A clean range test: flat at 2.3, falling fastest at lr 1e-2 to 0.8, then climbing ever faster from lr 0.3."""
    fall = 1.5 / (1 + math.exp(-4 * (math.log10(lr) + 2)))
    climb = 0.0 if lr < 0.3 else 20 * (math.log10(lr / 0.3)) ** 2
    return 2.3 - fall + climb


def test_a_clean_dip_then_blow_up_stops_once_the_smoothed_loss_passes_twice_its_minimum():
    lrs = ramp(100)
    taken = []  # the steps the reading asked for: a live test trains no step past the divergence

    def steps():
        for lr in lrs:
            taken.append(lr)
            yield lr, dip_then_blow_up(lr)

    found = read_range_test(steps(), beta=0.9)
    assert found.diverged and len(found.lrs) < 100 and len(taken) == len(found.lrs)
    assert found.smoothed[-1] > 2 * min(found.smoothed[:-1])  # the last step passed twice the minimum so far ...
    assert all(s <= 2 * min(found.smoothed[: i + 1]) for i, s in enumerate(found.smoothed[:-1]))  # ... the first to
    assert 10**-2.5 < found.suggestion < 10**-1.5  # within half a decade of the fastest fall (the average lags)
    assert lrs[0] < found.suggestion < found.lrs[-1]
    assert "stopped at lr" in found.summary() and "suggestion" in found.summary()


def test_a_blow_up_that_smoothing_keeps_below_four_times_its_minimum_is_still_divergence():
    # the training chapter's live test, in shape: a loss that barely falls (2.44 to 2.25) and then, from lr 0.03,
    # alternates between 3 and 11; its smoothed loss peaked at 2.9 times its minimum, so fastai's factor of
    # four reported "no divergence"
    lrs = ramp(48, 1e-3, 3.0)
    rng = np.random.default_rng(0)
    losses = [2.3 + 0.13 * rng.standard_normal() if lr < 0.02 else rng.choice([3.0, 11.0]) for lr in lrs]
    found = read_range_test(zip(lrs, losses), beta=0.9)
    assert found.diverged and found.lrs[-1] < 0.3


def test_a_noisy_short_test_that_hardly_falls_suggests_nothing_and_says_so():
    lrs = ramp(48, 1e-3, 3.0)
    rng = np.random.default_rng(1)
    losses = [2.35 - 0.1 * (lr < 0.01) * math.log10(lr / 1e-3) + 0.13 * rng.standard_normal() for lr in lrs]
    losses = [loss if lr < 0.02 else loss + 40 * math.log10(lr / 0.02) for lr, loss in zip(lrs, losses)]
    found = read_range_test(zip(lrs, losses), beta=0.9)
    assert found.diverged
    assert found.suggestion is None  # the old reading suggested lr 0.0077, where this noise happened to dip
    assert "too short to suggest" in found.summary()


def test_a_monotone_fall_suggests_its_steepest_point_and_a_monotone_climb_nothing():
    lrs = ramp(60)
    falling = read_range_test(((lr, 2.3 - 1.5 / (1 + math.exp(-4 * (math.log10(lr) + 2)))) for lr in lrs), beta=0.9)
    assert not falling.diverged and len(falling.lrs) == 60
    assert 10**-2.5 < falling.suggestion < 10**-1.5
    assert "no divergence" in falling.summary()
    rising = read_range_test(((lr, 2.3 + math.log10(lr / 1e-4)) for lr in lrs), beta=0.9)
    assert rising.diverged and rising.suggestion is None


def test_a_reading_refuses_a_factor_that_is_not_above_one():
    with pytest.raises(ValueError, match="diverge=0.5 must be a factor > 1"):
        read_range_test([(1e-3, 2.3)], diverge=0.5)


def test_a_loss_that_is_not_finite_ends_the_reading_before_it_is_recorded():
    found = read_range_test([(1e-3, 2.3), (1e-2, 2.1), (1e-1, math.nan), (1.0, 2.0)])
    assert found.diverged and found.lrs == [1e-3, 1e-2] and found.suggestion is None


@pytest.mark.parametrize(
    ("bounds", "message"),
    [
        (dict(start=0.0), "start=0.0 must be a finite learning rate > 0"),
        (dict(start=1.0, end=0.1), "end=0.1 must be a finite learning rate above start=1.0"),
        (dict(end=math.inf), "end=inf must be"),
        (dict(steps=1), "steps=1 must be a whole number >= 2"),
        (dict(diverge=1.0), "diverge=1.0 must be a factor > 1"),
        (dict(beta=1.0), r"beta=1.0 must be in \[0, 1\)"),
    ],
)
def test_bad_bounds_are_refused_in_one_line_before_any_work(bounds, message):
    with pytest.raises(ValueError, match=message) as error:
        lr_find(config(data_dir="/nonexistent"), **bounds)  # no data is read: the bounds fail first
    assert "\n" not in str(error.value)


def test_the_range_test_figure_shows_both_curves_the_suggestion_and_the_peak(tmp_path):
    found = lr_find(config(), start=1e-4, end=100.0, steps=60, model=tiny_model(), train_loader=tiny_loader())
    fig = plots.lr_range_test(found, peak=0.2, path=tmp_path / "lr.png")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[0].startswith("loss of each step") and labels[1] == "smoothed loss"
    assert any(label.startswith("steepest descent: lr") for label in labels)
    assert "the profile's lr 0.2" in labels
    assert (tmp_path / "lr.png").stat().st_size > 0


def test_the_figure_keeps_the_whole_smoothed_curve_inside_its_axes_and_marks_the_stop():
    lrs = ramp(100)
    found = read_range_test(((lr, dip_then_blow_up(lr)) for lr in lrs), beta=0.9)
    ax = plots.lr_range_test(found).axes[0]
    bottom, top = ax.get_ylim()
    assert bottom < min(found.smoothed) and max(found.smoothed) < top
    labels = [line.get_label().replace("\n", " ") for line in ax.get_lines()]  # the legend wraps long labels
    assert "stopped: the smoothed loss passed twice its minimum" in labels


def test_a_figure_without_a_suggestion_says_the_test_was_too_short():
    lrs = ramp(30, 1e-3, 3.0)
    found = read_range_test(((lr, 2.3 + 0.5 * math.log10(lr / 1e-3)) for lr in lrs), beta=0.9)
    assert found.suggestion is None
    ax = plots.lr_range_test(found).axes[0]
    labels = [line.get_label().replace("\n", " ") for line in ax.get_lines()]
    assert any("too short to suggest" in label for label in labels)


def test_the_summary_is_short_lines_that_fit_the_books_column():
    # the book prints it under the chapter's live test; one 219-character line scrolled sideways at 1280 px
    lrs = ramp(48, 1e-3, 3.0)
    rng = np.random.default_rng(1)
    losses = [2.35 + 0.13 * rng.standard_normal() if lr < 0.02 else 40.0 for lr in lrs]
    for found in (read_range_test(zip(lrs, losses), beta=0.9), read_range_test(zip(lrs, [2.0] * 48), beta=0.9)):
        lines = found.summary().splitlines()
        assert len(lines) == 3 and all(len(line) <= 100 for line in lines), lines
