"""The run folder has one owner: a second process is turned away, a folder that is not a run is never written to,
every kill point leaves one state, a full disk says so in one line and leaves no temp file, a finished run needs no
checkpoint, read errors name the file, and a resume on other data (or threads) is caught.

These tests drive ``eva9 train`` and ``eva9 evaluate`` on the tiny image folder (two steps of 5 images per
epoch), so they state what a user sees; the network is a tiny stand-in for ResNet18, to keep them fast."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import eva9.train.runs
from eva9.cli import main
from eva9.data import datasets


def tiny_network(name: str = "resnet18") -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(4, 10),
    )  # fmt: skip


@pytest.fixture(autouse=True)
def _tiny_network(monkeypatch):
    monkeypatch.setattr(eva9.train.runs, "build_model", tiny_network)  # what fit trains and load_run rebuilds


def train_args(data: Path, out: Path, epochs: int = 1, *extra: str) -> list[str]:
    return [
        "train", "--profile", "smoke", "--data-dir", str(data), "--train-per-class", "1", "--test-per-class", "1",
        "--batch-size", "5", "--workers", "0", "--device", "cpu", "--epochs", str(epochs), "--out", str(out),
        "--quiet", *extra,
    ]  # fmt: skip


def one_error_line(capsys, command: str = "train") -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"eva9 {command}: error:"), err
    return err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def finished(tiny_folder, tmp_path, capsys) -> Path:
    out = tmp_path / "run"
    assert main(train_args(tiny_folder, out, 2)) == 0
    capsys.readouterr()
    return out


# ------------------------------------------------------------------------------------------------------ owner


HOLDER = r"""
import json, os, sys, time
from eva9.train.folder import RunFolder

out, children = sys.argv[1], sys.argv[2]
with RunFolder(out).lock():
    pids = []
    if children == "fork":  # a child that outlives its parent, holding every descriptor the parent had
        pid = os.fork()
        if pid == 0:
            time.sleep(300)
            os._exit(0)
        pids.append(pid)
    elif children == "loader":  # what a trainer has: forked DataLoader workers, kept between epochs
        import torch.utils.data

        loader = torch.utils.data.DataLoader(
            list(range(64)), batch_size=4, num_workers=2, multiprocessing_context="fork", persistent_workers=True
        )
        batches = iter(loader)
        next(batches)
        pids.extend(worker.pid for worker in batches._workers)
    print(json.dumps({"pid": os.getpid(), "children": pids}), flush=True)
    time.sleep(300)
"""


def hold_the_lock(out: Path, children: str = "none") -> tuple[subprocess.Popen, dict]:
    """A process holding ``out``'s lock through eva9's own RunFolder.lock(), as a first `eva9 train` does."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), children], stdout=subprocess.PIPE, env=env)
    line = holder.stdout.readline()  # type: ignore[union-attr]
    assert line, "the lock holder did not start"
    return holder, json.loads(line)


def end(process: subprocess.Popen, children: list[int]) -> None:
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    process.wait(timeout=30)


def test_a_second_train_on_a_busy_folder_exits_1_naming_the_live_holder_and_touches_nothing(
    tiny_folder, tmp_path, capsys
):
    pytest.importorskip("fcntl")
    out = tmp_path / "run"
    holder, info = hold_the_lock(out)
    try:
        before = snapshot(out)
        assert main(train_args(tiny_folder, out)) == 1
        err = one_error_line(capsys)
        assert str(out) in err and "in use" in err
        if Path("/proc/locks").is_file():
            assert f"(pid {info['pid']})" in err
        assert snapshot(out) == before
    finally:
        end(holder, info["children"])
    assert main(train_args(tiny_folder, out)) == 0  # once released, it trains


@pytest.mark.parametrize("children", ["fork", "loader"])
def test_a_killed_trainer_frees_its_folder_at_once_though_its_children_live_on(tiny_folder, tmp_path, capsys, children):
    pytest.importorskip("fcntl")
    out = tmp_path / "run"
    assert main(train_args(tiny_folder, out, 1, "--lr", "0.01")) == 0  # a run to continue
    holder, info = hold_the_lock(out, children)
    try:
        assert info["children"] and all(Path(f"/proc/{pid}").exists() for pid in info["children"])
        holder.kill()  # SIGKILL: nothing of the trainer runs after it
        holder.wait(timeout=30)
        assert all(Path(f"/proc/{pid}").exists() for pid in info["children"])  # its workers are still alive
        capsys.readouterr()
        assert main(train_args(tiny_folder, out, 2, "--lr", "0.01", "--resume")) == 0, capsys.readouterr().err
        assert [e["epoch"] for e in json.loads((out / "history.json").read_text())["epochs"]] == [1, 2]
    finally:
        end(holder, info["children"])


def test_one_process_cannot_lock_a_folder_twice(tmp_path):
    pytest.importorskip("fcntl")
    from eva9.train import RunFolder, RunFolderBusy

    with RunFolder(tmp_path / "run").lock():
        with pytest.raises(RunFolderBusy, match="this process"):
            with RunFolder(tmp_path / "run").lock():
                pass
        RunFolder(tmp_path / "run").check_is_run_or_empty()  # reading the marker keeps the lock
        with pytest.raises(RunFolderBusy):
            with RunFolder(tmp_path / "run").lock():
                pass


@pytest.mark.parametrize("resume", [False, True])
def test_out_on_a_folder_that_is_not_a_run_is_refused_and_its_files_stay_byte_for_byte(
    tiny_folder, tmp_path, capsys, resume
):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "model.pt").write_bytes(b"my own weights")
    (mine / "config.json").write_text('{"my": "settings"}')
    (mine / "notes.txt").write_text("notes")
    before = snapshot(mine)
    assert main(train_args(tiny_folder, mine, 1, *(["--resume"] if resume else []))) == 1
    err = one_error_line(capsys)
    assert str(mine) in err and "not an eva9 run folder" in err
    assert snapshot(mine) == before


# --------------------------------------------------------------------------------------------- one state


class Killed(BaseException):
    """Stands for SIGKILL at a write point: nothing after it runs (no except clause catches a BaseException)."""


def _renames(monkeypatch, out: Path, kill_after: int | None = None) -> list[str]:
    """Record the names of the files renamed into ``out`` (every atomic write ends so); kill after the n-th."""
    done: list[str] = []
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        real(src, dst, *args, **kwargs)
        if Path(dst).parent == out:
            done.append(Path(dst).name)
            if kill_after is not None and len(done) == kill_after:
                raise Killed

    monkeypatch.setattr(os, "replace", replace)
    return done


@pytest.mark.parametrize("point", range(4))  # the last epoch's writes: checkpoint, history, model, metrics
def test_a_kill_at_each_write_point_of_the_last_epoch_leaves_one_state(tiny_folder, tmp_path, capsys, point):
    reference = tmp_path / "reference"
    with pytest.MonkeyPatch.context() as patch:
        writes = _renames(patch, reference)
        assert main(train_args(tiny_folder, reference, 2)) == 0
    last_epoch = len(writes) - 4
    assert writes[last_epoch:] == ["checkpoint.pt", "history.json", "model.pt", "metrics.json"]

    out = tmp_path / "run"
    with pytest.MonkeyPatch.context() as patch, pytest.raises(Killed):
        _renames(patch, out, kill_after=last_epoch + point + 1)
        main(train_args(tiny_folder, out, 2))
    assert main(train_args(tiny_folder, out, 2, "--resume")) == 0
    history = json.loads((out / "history.json").read_text())["epochs"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in history] == [1, 2] and metrics["epochs"] == 2
    expected = json.loads((reference / "history.json").read_text())["epochs"]
    for key in ("train_loss", "test_loss", "test_acc"):
        assert [e[key] for e in history] == pytest.approx([e[key] for e in expected], rel=1e-5)
    assert metrics["test_loss"] == pytest.approx(history[-1]["test_loss"], rel=1e-6)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".eva9-run"]


def test_a_full_disk_says_so_in_one_line_and_leaves_no_temp_file(tiny_folder, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    real = os.fsync

    def full_when_the_checkpoint_is_written(fd):
        if any(p.name.startswith(".checkpoint.pt") for p in out.iterdir()):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", full_when_the_checkpoint_is_written)
    assert main(train_args(tiny_folder, out)) == 1
    err = one_error_line(capsys)
    assert f"could not write {out / 'checkpoint.pt'}: no space left on device" in err
    monkeypatch.undo()
    assert not [
        p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".eva9-run"
    ]  # no temp file left behind
    assert main(train_args(tiny_folder, out, 1, "--resume")) == 0  # the retry is not blocked


def test_a_finished_run_with_a_damaged_checkpoint_still_resumes_and_prunes(finished, capsys):
    (finished / "checkpoint.pt").write_bytes(b"damaged")
    weights = (finished / "model.pt").read_bytes()
    assert main(["train", "--out", str(finished), "--resume", "--quiet"]) == 0, capsys.readouterr().err
    assert main(["train", "--out", str(finished), "--resume", "--keep-weights-only", "--quiet"]) == 0
    assert not (finished / "checkpoint.pt").exists() and (finished / "model.pt").read_bytes() == weights


@pytest.mark.parametrize(
    "name, command",
    [("config.json", "evaluate"), ("history.json", "evaluate"), ("config.json", "train"), ("metrics.json", "train")],
)
def test_a_corrupt_json_file_is_named_with_what_to_do(finished, capsys, name, command):
    (finished / name).write_text("{not json")
    if command == "evaluate":
        assert main(["evaluate", "--run", str(finished), "--workers", "0"]) == 1
    else:
        assert main(["train", "--out", str(finished), "--resume", "--quiet"]) == 1
    err = one_error_line(capsys, command)
    assert str(finished / name) in err and "Delete the run folder" in err


# ----------------------------------------------------------------------------------------------- same data


def test_a_resume_on_changed_data_is_refused_in_one_line(tiny_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(tiny_folder, out, 1, "--lr", "0.01")) == 0  # constant lr: the run may grow
    before = snapshot(out)
    for image in (tiny_folder / "train" / "cat").iterdir():  # the cats changed between kill and resume
        Image.new("RGB", (32, 32), (9, 9, 9)).save(image)
    datasets._DECODED.clear()  # as in the new process that resumes
    assert main(train_args(tiny_folder, out, 2, "--resume")) == 1
    err = one_error_line(capsys)
    assert f"cannot resume {out}: its train data changed" in err
    assert snapshot(out) == before


def test_a_resume_on_another_thread_count_warns_in_one_line(tiny_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(tiny_folder, out, 1)) == 0
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        capsys.readouterr()
        assert main(train_args(tiny_folder, out, 2, "--resume")) == 0
    finally:
        torch.set_num_threads(threads)
    warning = [line for line in capsys.readouterr().err.splitlines() if "thread" in line]
    assert len(warning) == 1 and f"trained with {threads} CPU thread(s)" in warning[0]


# ------------------------------------------------------------------------------------- a user's folder, legacy runs


def _user_folders(tmp_path: Path, finished: Path) -> dict[str, Path]:
    """Folders a user might point --out at, none of them made by eva9, each with a config.json that parses."""
    eva9_config = (finished / "config.json").read_text()
    eva9_history = (finished / "history.json").read_text()
    kinds = {
        "an empty config": {"config.json": "{}", "history.json": '{"epochs": []}', "model.pt": b"my weights"},
        "a config of my own": {"config.json": '{"lr": 0.1, "epochs": 3}', "history.json": "[1, 2]"},
        "an invalid eva9 config": {
            "config.json": eva9_config.replace('"epochs": 2', '"epochs": -4'), "history.json": eva9_history,
        },
        "an eva9 run and my notes": {"config.json": eva9_config, "history.json": eva9_history, "notes.txt": "mine"},
        "an eva9 config, my history": {"config.json": eva9_config, "history.json": '{"epochs": [{"loss": 1}]}'},
        "an eva9 config and nothing else": {"config.json": eva9_config, "model.pt": b"my weights"},
        "an eva9 run with a folder of mine": {"config.json": eva9_config, "history.json": eva9_history, "data/x": "x"},
    }  # fmt: skip
    folders = {}
    for i, (kind, files) in enumerate(kinds.items()):
        folder = tmp_path / f"mine{i}"
        for name, content in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                (folder / name).write_bytes(content)
            else:
                (folder / name).write_text(content)
        folders[kind] = folder
    return folders


@pytest.mark.parametrize("resume", [False, True])
def test_a_users_folder_with_a_config_json_that_parses_is_refused_and_every_byte_kept(
    tiny_folder, finished, tmp_path, capsys, resume
):
    for kind, folder in _user_folders(tmp_path, finished).items():
        before = snapshot(folder)
        names = sorted(p.name for p in folder.iterdir())
        assert main(train_args(tiny_folder, folder, 2, *(["--resume"] if resume else []))) == 1, kind
        err = one_error_line(capsys)
        assert str(folder) in err and "not an eva9 run folder" in err, (kind, err)
        assert snapshot(folder) == before and sorted(p.name for p in folder.iterdir()) == names, kind


def _as_an_older_eva9_left_it(run: Path) -> Path:
    """The folder as eva9 before the marker wrote it: the same files, no .eva9-run."""
    (run / ".eva9-run").unlink()
    return run


def test_a_run_folder_of_an_earlier_eva9_keeps_working_and_gets_the_marker(tiny_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(tiny_folder, out, 1, "--lr", "0.01")) == 0
    _as_an_older_eva9_left_it(out)
    (out / ".checkpoint.pt.k2j4h6g8.tmp").write_bytes(b"half a checkpoint")  # a write an older eva9 lost to a kill
    assert main(["evaluate", "--run", str(out), "--workers", "0"]) == 0  # reading needs no marker
    assert not (out / ".eva9-run").exists()
    assert main(train_args(tiny_folder, out, 2, "--lr", "0.01", "--resume")) == 0, capsys.readouterr().err
    assert json.loads((out / ".eva9-run").read_text())["format"] == 1
    assert [e["epoch"] for e in json.loads((out / "history.json").read_text())["epochs"]] == [1, 2]
    assert not (out / ".checkpoint.pt.k2j4h6g8.tmp").exists()


def test_a_legacy_run_folder_with_its_own_tensorboard_folder_is_recognised(finished, tmp_path):
    config = json.loads((finished / "config.json").read_text())
    (finished / "config.json").write_text(json.dumps({**config, "tensorboard": str(finished / "tb")}))
    (finished / "tb").mkdir()
    (finished / "tb" / "events.out.tfevents.1.host").write_bytes(b"events")
    _as_an_older_eva9_left_it(finished)
    eva9.train.runs.fit(out=finished, resume=True, quiet=True)  # finished as it is: opened, recognised, marked
    assert (finished / ".eva9-run").is_file()
    other = tmp_path / "other"
    finished.rename(other)
    (other / ".eva9-run").unlink()
    (other / "tb").rename(other / "tb2")  # a folder the config does not name
    with pytest.raises(eva9.train.runs.RunFolderError, match="tb2, which eva9 never writes"):
        eva9.train.runs.fit(out=other, resume=True, quiet=True)


def test_a_marker_of_a_later_format_or_a_damaged_one_is_refused_in_one_line(finished, capsys):
    before = snapshot(finished)
    (finished / ".eva9-run").write_text('{"format": 7}')
    assert main(["train", "--out", str(finished), "--resume", "--quiet"]) == 1
    assert "newer eva9" in one_error_line(capsys)
    (finished / ".eva9-run").write_text("not json")
    assert main(["train", "--out", str(finished), "--resume", "--quiet"]) == 1
    assert "damaged" in one_error_line(capsys)
    (finished / ".eva9-run").write_bytes(before[".eva9-run"])
    assert snapshot(finished) == before


def test_the_temp_files_of_killed_writes_are_removed_when_the_folder_is_next_opened(finished, capsys):
    temps = [".checkpoint.pt.abcd1234.tmp", ".history.json.z_9y8x7w.tmp", ".metrics.json.00000000.tmp"]
    for name in temps:
        (finished / name).write_bytes(b"what a killed write left")
    (finished / ".my-notes.tmp").write_text("not eva9's")  # no name write_atomic gives: kept
    (finished / "checkpoint.pt.abcd1234.tmp").write_text("not eva9's either")
    weights = (finished / "model.pt").read_bytes()
    assert main(["train", "--out", str(finished), "--resume", "--quiet"]) == 0, capsys.readouterr().err
    assert not [name for name in temps if (finished / name).exists()]
    assert (finished / ".my-notes.tmp").exists() and (finished / "checkpoint.pt.abcd1234.tmp").exists()
    assert (finished / "model.pt").read_bytes() == weights


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_run_files_get_the_users_umask(tiny_folder, tmp_path, umask, mode):
    out = tmp_path / "run"
    old = os.umask(umask)
    try:
        assert main(train_args(tiny_folder, out)) == 0
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert set(modes) == {".eva9-run", *eva9.train.runs.RUN_FILES}
    assert modes == dict.fromkeys(modes, mode)


@pytest.mark.parametrize("where", ["under a file", "a file"])
def test_an_unwritable_tensorboard_folder_fails_in_one_line_before_the_run_folder_is_written(
    tiny_folder, tmp_path, capsys, where
):
    pytest.importorskip("tensorboard")
    (tmp_path / "a-file").write_text("not a folder")
    board = tmp_path / "a-file" / "tb" if where == "under a file" else tmp_path / "a-file"
    out = tmp_path / "run"
    assert main(train_args(tiny_folder, out, 1, "--tensorboard", str(board))) == 1
    err = one_error_line(capsys)
    assert f"cannot write TensorBoard files into {board}" in err
    assert not out.exists()
    assert (tmp_path / "a-file").read_text() == "not a folder"


def test_a_marker_that_is_a_link_is_never_written_through(tmp_path, capsys, tiny_folder):
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("")
    out = tmp_path / "run"
    out.mkdir()
    (out / ".eva9-run").symlink_to(elsewhere)  # an empty "marker" that leads out of the folder
    assert main(train_args(tiny_folder, out)) == 1
    assert "cannot open" in one_error_line(capsys) and elsewhere.read_text() == ""
