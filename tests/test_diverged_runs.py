"""Weights that hold NaN or infinity (a diverged run) and weights files that are empty are one line and exit
status 1 wherever they are read: ``eva9 predict``, ``eva9 evaluate``, ``eva9 train --resume`` and
``benchmarks/publish_run.py``, which never publishes them; nothing prints "nan %"."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from eva9 import models
from eva9.cli import main
from eva9.results import save_weights
from eva9.weights import WeightsError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def one_error_line(capsys, command: str) -> str:
    captured = capsys.readouterr()
    assert "nan %" not in captured.out, captured.out
    assert captured.err.count("\n") == 1 and captured.err.startswith(command), captured.err
    return captured.err


def poisoned(state: dict, value: float = math.nan) -> dict:
    """The state with one value of one weight replaced, as a diverged run leaves every weight."""
    state = {key: tensor.contiguous().clone() for key, tensor in state.items()}
    state["layer3.0.conv1.weight"].view(-1)[7] = value
    return state


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished ResNet18 run on a tiny image folder (one epoch of 10 images)."""
    from conftest import fake_image

    from eva9.data import CLASSES

    root = tmp_path_factory.mktemp("diverged")
    for split in ("train", "test"):
        for label, name in enumerate(CLASSES):
            (root / "data" / split / name).mkdir(parents=True)
            Image.fromarray(fake_image(label, 0)).save(root / "data" / split / name / "0000.png")
    out = root / "run"
    args = ["--train-per-class", "1", "--test-per-class", "1", "--batch-size", "5", "--workers", "0"]
    argv = ["train", "--profile", "smoke", "--data-dir", str(root / "data"), "--out", str(out), "--epochs", "1"]
    assert main([*argv, *args, "--device", "cpu", "--quiet"]) == 0
    return out


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_predict_with_non_finite_weights_is_one_line_and_exit_1(photo, tmp_path, capsys, value):
    path = tmp_path / "diverged.pt"
    torch.save(poisoned(models.resnet18().state_dict(), value), path)
    assert main(["predict", str(photo), "--weights", str(path)]) == 1
    err = one_error_line(capsys, "eva9 predict: error:")
    assert f"refused the weights {path}" in err and "layer3.0.conv1.weight" in err and "NaN or infinite" in err


def test_evaluate_on_a_diverged_run_is_one_line_and_exit_1(finished, tmp_path, capsys):
    model = finished / "model.pt"
    healthy = model.read_bytes()
    try:
        torch.save(poisoned(torch.load(model, weights_only=True)), model)
        assert main(["evaluate", "--run", str(finished), "--workers", "0", "--device", "cpu"]) == 1
        err = one_error_line(capsys, "eva9 evaluate: error:")
        assert f"refused the weights {model}" in err
    finally:
        model.write_bytes(healthy)


@pytest.mark.parametrize("broken", ["weights", "accuracy"])
def test_publish_run_refuses_a_diverged_run_in_one_line_and_writes_nothing(finished, tmp_path, capsys, broken):
    import publish_run

    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "history.json", "metrics.json", "model.pt"):
        (run / name).write_bytes((finished / name).read_bytes())
    if broken == "weights":
        torch.save(poisoned(torch.load(run / "model.pt", weights_only=True)), run / "model.pt")
    else:
        metrics = json.loads((run / "metrics.json").read_text())
        (run / "metrics.json").write_text(json.dumps({**metrics, "test_acc": math.nan}))  # JSON's NaN
    out = tmp_path / "results"
    argv = [str(run), "--name", "diverged", "--date", "2026-12-01", "--machine", "a test", "--out", str(out)]
    assert publish_run.main([*argv, "--data-dir", json.loads((run / "config.json").read_text())["data_dir"]]) == 1
    err = one_error_line(capsys, "publish_run.py:")
    assert ("NaN or infinite" in err) if broken == "weights" else ("test_acc of nan" in err)
    assert not out.exists()


def test_save_weights_never_publishes_non_finite_weights(tmp_path):
    with pytest.raises(WeightsError, match="NaN or infinite"):
        save_weights(poisoned(models.resnet18().state_dict()), "diverged", tmp_path / "weights")
    assert not (tmp_path / "weights").exists()


# ----------------------------------------------------------------------------------------------- empty files


def test_an_empty_checkpoint_says_it_is_empty_and_what_to_do(finished, tmp_path, capsys):
    run = tmp_path / "killed"
    run.mkdir()
    for name in ("config.json", "history.json"):
        (run / name).write_bytes((finished / name).read_bytes())
    (run / "checkpoint.pt").write_bytes(b"")  # what a disk that filled or a copy that stopped can leave
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 1
    err = one_error_line(capsys, "eva9 train: error:")
    assert f"cannot read checkpoint {run / 'checkpoint.pt'}: the file is empty" in err and "Delete the run" in err
    assert main(["evaluate", "--run", str(run), "--workers", "0"]) == 1
    assert "the file is empty" in one_error_line(capsys, "eva9 evaluate: error:")
    (run / "checkpoint.pt").write_bytes((finished / "checkpoint.pt").read_bytes()[:5000])  # cut short
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 1
    assert "5,000 bytes) is damaged or cut short" in one_error_line(capsys, "eva9 train: error:")


def test_empty_weights_say_they_are_empty(photo, tmp_path, capsys):
    (tmp_path / "empty.pt").write_bytes(b"")
    assert main(["predict", str(photo), "--weights", str(tmp_path / "empty.pt")]) == 1
    assert "the file is empty" in one_error_line(capsys, "eva9 predict: error:")
