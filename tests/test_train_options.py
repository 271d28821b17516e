"""TrainConfig options beyond the recipe: augmentation on the training device, torch.compile, TensorBoard logging."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from eva9.data.device_batches import DeviceBatches
from eva9.train import fit, profile
from eva9.train.parts import _loaders
from eva9.train.tensorboard import SCALARS, EpochLogger


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)
    )


def tiny_loaders(n_train: int = 40, n_test: int = 20, batch_size: int = 10):
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(n_train + n_test, 3, 8, 8, generator=g)
    y = torch.arange(n_train + n_test) % 10
    x = x + y.view(-1, 1, 1, 1) * 0.1
    train = DataLoader(
        TensorDataset(x[:n_train], y[:n_train]),
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(0),
    )
    return train, DataLoader(TensorDataset(x[n_train:], y[n_train:]), batch_size=batch_size)


def tiny_config(**overrides):
    return profile("seed", **{"epochs": 2, "batch_size": 10, "workers": 0, "device": "cpu", **overrides})


@pytest.mark.parametrize(("field", "value"), [("augment_on", "gpu"), ("compile", "yes"), ("tensorboard", 3)])
def test_the_new_fields_are_validated(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}="):
        tiny_config(**{field: value})


def test_compile_and_tensorboard_may_change_on_resume_but_augment_on_may_not():
    from eva9.train import TrainConfig

    assert {"compile", "tensorboard"} <= set(TrainConfig.RESUMABLE)
    assert "augment_on" not in TrainConfig.RESUMABLE  # other draws: another computation


# ---------------------------------------------------------------------------------------- augmentation on the device


def test_augment_on_device_trains_from_device_batches_reproducibly(make_batches_folder):
    folder = make_batches_folder(n_per_batch=20)  # 100 training images, 20 test images
    config = tiny_config(augment_on="device", data_dir=str(folder), batch_size=25, epochs=2)
    train, test = _loaders(config, torch.device("cpu"))
    assert isinstance(train, DeviceBatches) and len(train) == 4
    assert len(test.dataset) == 20  # the test set is the workers' loader's, unchanged
    first = fit(config, model=tiny_model(), quiet=True).history
    again = fit(config, model=tiny_model(), quiet=True).history
    assert [e["train_loss"] for e in first.epochs] == [e["train_loss"] for e in again.epochs]
    assert all(e["train_images_per_s"] > 0 for e in first.epochs)


def test_a_device_augmented_run_grown_by_resuming_matches_an_uninterrupted_one(make_batches_folder, tmp_path):
    folder = make_batches_folder(n_per_batch=20)
    config = tiny_config(augment_on="device", data_dir=str(folder), batch_size=25, epochs=2)
    straight = fit(config, model=tiny_model(), out=tmp_path / "straight", quiet=True).history
    fit(config.replace(epochs=1), model=tiny_model(), out=tmp_path / "grown", quiet=True)
    grown = fit(
        config, model=tiny_model(), out=tmp_path / "grown", resume=True, quiet=True
    ).history  # a new process would do so
    for a, b in zip(straight.epochs, grown.epochs):
        assert (a["train_loss"], a["test_loss"]) == (b["train_loss"], b["test_loss"])  # bitwise: the same batches


# ----------------------------------------------------------------------------------------------------- compile


def _can_compile() -> str | None:
    """None where torch.compile works here, else why not."""
    if sys.platform == "win32":
        return "torch.compile's inductor does not support Windows here"
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.ones(2))
    except Exception as error:  # noqa: BLE001 - any failure means this machine cannot compile
        return f"torch.compile fails on this machine: {type(error).__name__}: {str(error)[:120]}"
    return None


def test_a_compiled_model_trains_to_the_eager_loss_and_keeps_its_weight_names():
    reason = _can_compile()
    if reason is not None:
        pytest.skip(reason)
    runs = {}
    for compiled in (False, True):
        model = tiny_model()
        train, test = tiny_loaders()
        history = fit(
            tiny_config(compile=compiled), model=model, quiet=True, train_loader=train, test_loader=test
        ).history
        runs[compiled] = (history, model)
    eager, compiled = (runs[False][0].epochs, runs[True][0].epochs)
    for a, b in zip(eager, compiled):  # two epochs of four steps: compiled kernels round differently, slightly
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4, abs=1e-5)
        assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-4, abs=1e-5)
    assert list(runs[True][1].state_dict()) == list(runs[False][1].state_dict())  # no "_orig_mod." prefix


# -------------------------------------------------------------------------------------------------- tensorboard


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files of ``folder``, read back with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_fit_logs_every_epochs_numbers_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    train, test = tiny_loaders()
    config = tiny_config(tensorboard=str(tmp_path / "tb"))
    history = fit(config, model=tiny_model(), quiet=True, train_loader=train, test_loader=test).history
    scalars = _scalars(tmp_path / "tb")
    assert set(scalars) == set(SCALARS.values())
    for field, tag in SCALARS.items():
        assert [step for step, _ in scalars[tag]] == [1, 2]
        expected = [record[field] for record in history.epochs]
        assert [value for _, value in scalars[tag]] == pytest.approx(expected, rel=1e-6)  # stored as float32


def test_without_tensorboard_the_logger_fails_in_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if the package were not installed
    with pytest.raises(ImportError, match=r"pip install 'eva9\[tensorboard\]'") as error:
        EpochLogger(tmp_path / "tb")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "tb").exists()
    EpochLogger(None).log_epoch({"epoch": 1, "lr": 0.1})  # no folder: nothing to import, nothing written


# ------------------------------------------------------------------------------------------------ the book's step


def test_the_step_the_book_includes_is_the_plain_sequence_in_about_ten_lines():
    from pathlib import Path

    source = (Path(__file__).resolve().parents[1] / "eva9" / "train" / "loop.py").read_text(encoding="utf-8")
    step = source.split("The training step begins here")[1].split("The training step ends here")[0]
    lines = [line.strip() for line in step.splitlines()[1:-1] if line.strip()]  # between the two marker comments
    assert len(lines) <= 12, lines
    order = ["model(images)", "criterion(logits, labels)", "zero_grad", ".backward()", "step(optimizer)"]
    order += ["scheduler.step()"]
    positions = [next(i for i, line in enumerate(lines) if key in line) for key in order]
    assert positions == sorted(positions)  # forward, loss, zero_grad, backward, step, schedule
    assert not any("isfinite" in line or "first_bad" in line or "bar" in line for line in lines)  # in helpers
