"""The command line: help for every option, one-line errors with a non-zero exit, a real smoke train and evaluate."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from eva9.cli import build_parser, main
from eva9.train import RUN_FILES, fit, profile

REPO = Path(__file__).resolve().parents[1]


def option_strings(command: str) -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return [s for action in sub._actions for s in action.option_strings if s.startswith("--") and s != "--help"]


@pytest.mark.parametrize("command", ["train", "lr-find", "evaluate"])
def test_help_explains_every_option(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    blocks = re.split(r"\n(?=  --)", text.split("options:", 1)[1])
    explained = {b.split()[0]: " ".join(b.split()[1:]) for b in blocks if b.strip().startswith("--")}
    for option in option_strings(command):
        assert option in explained, option
        words = re.sub(r"^[A-Z_ {},|.-]*", "", explained[option])  # drop the metavar, keep the explanation
        assert len(words.split()) >= 3, f"{option} has no explanation"


def test_top_level_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "train" in text and "evaluate" in text


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "--profile", "smoke", "--batch-size", "60", "--train-per-class", "5"], "--batch-size 60"),
        (["train", "--resume"], "--resume needs --out"),
        (["evaluate", "--run", "no/such/run"], "no run folder at no/such/run"),
    ],
)
def test_failures_exit_non_zero_with_one_line(argv, expected, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"eva9 {argv[0]}: error:") and expected in err


@pytest.mark.parametrize("argv", [["train", "--profile", "fastest"], ["train", "--epochs", "0"], []])
def test_bad_usage_exits_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2


def test_smoke_train_then_evaluate(cifar_root, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    data = str(cifar_root.resolve())  # the subprocess runs in tmp_path, so a relative path would break
    env = {**os.environ, "EVA9_DATA_DIR": data, "PYTHONPATH": str(REPO)}
    env.pop("EVA9_PROFILE", None)
    env.pop("EVA9_EPOCHS", None)
    train = [
        sys.executable,
        "-m",
        "eva9",
        "train",
        "--profile",
        "smoke",
        "--epochs",
        "1",
        "--train-per-class",
        "1",
        "--test-per-class",
        "1",
        "--batch-size",
        "5",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    done = subprocess.run(train, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert re.match(r"epoch +1/1 +train loss \d", lines[-2])
    assert re.match(r"final test accuracy: \d+\.\d\d %", lines[-1])
    assert sorted(p.name for p in out.iterdir()) == sorted([".eva9-run", *RUN_FILES])  # the marker, then the run
    config = json.loads((out / "config.json").read_text())
    assert (config["profile"], config["train_per_class"], config["test_per_class"]) == ("smoke", 1, 1)

    monkeypatch.setenv("EVA9_DATA_DIR", data)  # evaluate in this process; the data folder from the env
    assert main(["evaluate", "--run", str(out), "--workers", "0"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"Accuracy of the network on the 10 test images: \d+\.\d\d %", printed[0])
    names = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert [re.fullmatch(r"Accuracy of +(\w+) : +(\d+) %", line).group(1) for line in printed[1:]] == names
    accuracy = float(printed[0].split(": ")[1].rstrip(" %")) / 100
    assert accuracy == pytest.approx(json.loads((out / "metrics.json").read_text())["test_acc"])


def test_evaluate_picks_this_machines_device_not_the_one_the_run_trained_on(tiny_folder, tmp_path, capsys):
    out = tmp_path / "run"
    config = profile(
        "smoke", train_per_class=1, test_per_class=1, batch_size=5, workers=0, device="cpu", data_dir=str(tiny_folder)
    )
    fit(config, out=out, quiet=True)
    saved = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**saved, "device": "cuda"}))  # as if trained with --device cuda
    assert main(["evaluate", "--run", str(out), "--workers", "0"]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.startswith("Accuracy of the network on the 10 test images: ")


# ----------------------------------------------------------------------------------------- error paths (#12)


@pytest.fixture
def tiny_run(tiny_folder, tmp_path):
    """A finished ResNet18 run of two steps on the tiny image folder."""
    out = tmp_path / "run"
    config = profile(
        "smoke", train_per_class=1, test_per_class=1, batch_size=5, workers=0, device="cpu", data_dir=str(tiny_folder)
    )
    fit(config, out=out, quiet=True)
    return out


def one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"eva9 {command}: error:"), err
    return err


def test_ctrl_c_exits_130_and_says_how_to_continue(monkeypatch, capsys, tmp_path):
    import eva9.train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(eva9.train, "fit", interrupted)
    assert main(["train", "--profile", "smoke", "--out", str(tmp_path / "run")]) == 130
    assert "interrupted (a run folder can be continued with --resume)" in capsys.readouterr().err


def test_a_corrupt_checkpoint_is_named_with_what_to_do(tiny_run, capsys):
    for name in ("metrics.json", "model.pt"):
        (tiny_run / name).unlink()  # an unfinished run: resuming reads the checkpoint
    (tiny_run / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert main(["train", "--out", str(tiny_run), "--resume", "--quiet"]) == 1
    err = one_error_line(capsys, "train")
    assert f"cannot read checkpoint {tiny_run / 'checkpoint.pt'}" in err and "Delete the run folder" in err


def test_weights_that_do_not_fit_the_model_are_refused(tiny_run, capsys):
    torch.save({"conv1.weight": torch.zeros(1)}, tiny_run / "model.pt")
    assert main(["evaluate", "--run", str(tiny_run), "--workers", "0"]) == 1
    assert f"the weights in {tiny_run} do not fit a resnet18" in one_error_line(capsys, "evaluate")


def test_evaluate_with_a_bad_data_dir_names_the_folder(tiny_run, capsys, tmp_path):
    missing = tmp_path / "no-such-cifar"
    assert main(["evaluate", "--run", str(tiny_run), "--workers", "0", "--data-dir", str(missing)]) == 1
    err = one_error_line(capsys, "evaluate")
    assert f"CIFAR-10 folder {missing} does not exist" in err and "EVA9_DATA_DIR" in err


def test_keep_weights_only_drops_the_checkpoint_of_a_finished_run(tiny_run, capsys):
    weights = (tiny_run / "model.pt").read_bytes()
    assert main(["train", "--out", str(tiny_run), "--resume", "--keep-weights-only", "--quiet"]) == 0
    assert "dropped" in capsys.readouterr().out
    kept = [".eva9-run", "config.json", "history.json", "metrics.json", "model.pt"]
    assert sorted(p.name for p in tiny_run.iterdir()) == kept
    assert (tiny_run / "model.pt").read_bytes() == weights, "the finished run is not retrained"
    assert main(["train", "--out", str(tiny_run), "--resume", "--quiet"]) == 0, "and it stays finished"
    assert (tiny_run / "model.pt").read_bytes() == weights
    assert main(["evaluate", "--run", str(tiny_run), "--workers", "0"]) == 0


# ------------------------------------------------------------------------------------------ the CLI speaks CLI


def test_messages_name_the_flags_not_python_arguments(tiny_run, tiny_folder, capsys):
    args = ["train", "--profile", "smoke", "--data-dir", str(tiny_folder), "--out", str(tiny_run), "--quiet"]
    assert main([*args, "--train-per-class", "1", "--batch-size", "5", "--workers", "0"]) == 1
    err = one_error_line(capsys, "train")
    assert "pass --resume to continue it" in err and "--out" in err and "resume=True" not in err
    assert main([*args, "--batch-size", "600", "--workers", "0"]) == 1
    err = one_error_line(capsys, "train")
    assert "--batch-size 600: larger than the training set" in err and "TrainConfig" not in err
    missing = tiny_folder.parent / "absent"
    assert main(["evaluate", "--run", str(tiny_run), "--data-dir", str(missing)]) == 1
    err = one_error_line(capsys, "evaluate")
    assert "--data-dir" in err and "root=" not in err


def test_train_without_a_profile_makes_the_books_choice_and_says_so(tiny_folder, tmp_path, capsys, monkeypatch):
    import eva9.train.runs
    import eva9.utils

    monkeypatch.delenv("EVA9_PROFILE", raising=False)
    monkeypatch.setattr(eva9.utils, "pick_device", lambda preferred=None: torch.device("cpu"))  # a CPU machine
    monkeypatch.setattr(eva9.train.runs, "build_model", lambda name: torch.nn.Sequential(
        torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(2, 10)
    ))  # fmt: skip
    out = tmp_path / "run"
    args = ["--data-dir", str(tiny_folder), "--train-per-class", "1", "--test-per-class", "1", "--batch-size", "5"]
    assert main(["train", *args, "--workers", "0", "--device", "cpu", "--out", str(out)]) == 0
    assert "no --profile given, so cpu: no GPU here" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["profile"] == "cpu"


def test_a_directory_given_as_an_image_says_it_is_a_directory(tmp_path, capsys):
    assert main(["predict", str(tmp_path)]) == 1
    err = one_error_line(capsys, "predict")
    assert f"{tmp_path} is a directory, not an image file" in err


def test_a_run_whose_data_folder_holds_a_crafted_pickle_runs_no_code(tiny_run, make_batches_folder, tmp_path, capsys):
    import pickle

    folder = make_batches_folder(n_per_batch=2)
    marker = tmp_path / "the-pickle-ran"

    class RunsCode:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    (folder / "test_batch").write_bytes(pickle.dumps({"data": RunsCode(), "labels": [0, 1]}))
    config = json.loads((tiny_run / "config.json").read_text())
    (tiny_run / "config.json").write_text(json.dumps({**config, "data_dir": str(folder)}))  # a shared run folder
    assert main(["evaluate", "--run", str(tiny_run), "--workers", "0"]) == 1
    assert f"refused the CIFAR-10 batch file {folder / 'test_batch'}" in one_error_line(capsys, "evaluate")
    assert not marker.exists()
