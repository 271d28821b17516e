"""The command line's range test (`eva9 lr-find`) and TensorBoard option (`eva9 train --tensorboard DIR`)."""

from __future__ import annotations

import pytest

from eva9.cli import main
from eva9.dashboard import FIGURES
from eva9.train.tensorboard import SCALARS


def one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"eva9 {command}: error:"), err
    return err


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        (["--start", "0"], "start=0.0 must be a finite learning rate > 0"),
        (["--start", "1", "--end", "0.1"], "end=0.1 must be a finite learning rate above start=1.0"),
        (["--end", "nan"], "end=nan must be"),
    ],
)
def test_lr_find_refuses_bad_bounds_in_one_line(bounds, expected, capsys, tmp_path):
    argv = ["lr-find", "--profile", "smoke", "--device", "cpu", "--out", str(tmp_path / "lr.png"), *bounds]
    assert main(argv) == 1
    assert expected in one_error_line(capsys, "lr-find")
    assert not (tmp_path / "lr.png").exists()


def test_lr_find_refuses_an_output_that_is_not_a_png_in_an_existing_folder(capsys, tmp_path):
    assert main(["lr-find", "--out", str(tmp_path / "missing" / "lr.png")]) == 1
    assert "name a .png file in an existing folder" in one_error_line(capsys, "lr-find")
    assert main(["lr-find", "--out", str(tmp_path / "lr.pdf")]) == 1
    assert "name a .png file" in one_error_line(capsys, "lr-find")


def test_lr_find_plots_the_test_and_prints_the_suggestion(tiny_folder, tmp_path, capsys):
    out = tmp_path / "lr.png"
    argv = ["lr-find", "--profile", "fast", "--steps", "6", "--start", "1e-3", "--end", "1", "--batch-size", "10"]
    argv += ["--train-per-class", "4", "--data-dir", str(tiny_folder), "--device", "cpu", "--workers", "0"]
    assert main([*argv, "--out", str(out)]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "steps from lr 0.001 to" in printed and "profile fast peak 0.2" in printed and f"wrote {out}" in printed
    assert out.stat().st_size > 0


def test_train_with_tensorboard_logs_epochs_and_the_end_of_run_figures(tiny_folder, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = tmp_path / "tb"
    argv = ["train", "--profile", "smoke", "--train-per-class", "1", "--test-per-class", "1", "--batch-size", "5"]
    argv += ["--data-dir", str(tiny_folder), "--device", "cpu", "--workers", "0", "--out", str(tmp_path / "run")]
    assert main([*argv, "--tensorboard", str(board), "--quiet"]) == 0, capsys.readouterr().err
    assert f"tensorboard --logdir {board}" in capsys.readouterr().out
    events = EventAccumulator(str(board), size_guidance={"images": 0})
    events.Reload()
    assert set(events.Tags()["scalars"]) == set(SCALARS.values())
    assert set(events.Tags()["images"]) == set(FIGURES)  # add_figure stores a PNG image per figure
    for tag in FIGURES:
        (image,) = events.Images(tag)
        assert image.step == 1 and image.width > 100 and image.height > 100


def test_train_with_tensorboard_missing_fails_in_one_line_before_any_work(monkeypatch, capsys, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    argv = ["train", "--profile", "smoke", "--out", str(tmp_path / "run"), "--tensorboard", str(tmp_path / "tb")]
    assert main(argv) == 1
    assert "pip install 'eva9[tensorboard]'" in one_error_line(capsys, "train")
    assert not (tmp_path / "run").exists() and not (tmp_path / "tb").exists()
