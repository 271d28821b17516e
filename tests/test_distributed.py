"""Several processes, one run (eva9.train.distributed): each rank's slice of the one-process batch, then torchrun
on the CPU with gloo: 2 processes train what 1 does, rank 0 alone writes, a killed rank ends the group and the run
resumes at any world size, two "nodes" meet at a rendezvous on loopback, a bad batch is one line.

The torchrun tests train ``tests/distributed_script.py``'s tiny BatchNorm network (synchronised across the
processes) on a fake 80/40-image CIFAR-10 folder with the cpu profile's recipe (one-cycle, Nesterov, weight decay,
label smoothing) at a global batch of 16, 2 epochs. Measured on a 2-core CPU: the per-epoch training losses of 2
processes and of 1 agree to 2e-8 relative, the test losses and accuracies exactly, the final weights to 2.5e-6.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import fake_image

from eva9.data import CLASSES, DeviceBatches, EpochSampler, check_shardable, loaders, shard_of
from eva9.train import RUN_FILES, History, profile
from eva9.train.distributed import World, check_world
from eva9.train.folder import MARKER

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "distributed_script.py"
WEIGHT_TOLERANCE = 1e-4
"""The largest absolute difference allowed between the final weights (and BatchNorm statistics) of runs at two
world sizes: the float32 sums run in another order (measured: 2.5e-6)."""
LOSS_TOLERANCE = 1e-5
"""Relative difference allowed between two world sizes' per-epoch training losses (the issue asks for 1e-3; measured:
2e-8; without synchronised BatchNorm the test losses differ by 1.7e-5 on this fake data, and the test fails)."""
TIMEOUT = 180

distributed = pytest.mark.distributed


# ------------------------------------------------------------------------------------------- slices, in process


@pytest.mark.parametrize("size, batch, world", [(53, 10, 2), (48, 12, 3), (40, 8, 4)])
def test_each_rank_takes_its_slice_of_every_one_process_batch_with_the_same_seeds(size, batch, world):
    for epoch in (0, 3):
        alone = EpochSampler(size, seed=7)
        alone.set_epoch(epoch)
        pairs = list(alone)[: size // batch * batch]  # the one-process loader drops the last partial batch
        one_process = [pairs[i : i + batch] for i in range(0, len(pairs), batch)]
        ranks = []
        for rank in range(world):
            sampler = EpochSampler(size, seed=7, rank=rank, world_size=world, batch_size=batch)
            sampler.set_epoch(epoch)
            mine = list(sampler)
            assert len(mine) == len(sampler) == size // batch * batch // world
            ranks.append([mine[i : i + batch // world] for i in range(0, len(mine), batch // world)])
        for step, whole in enumerate(one_process):
            assert sum((ranks[rank][step] for rank in range(world)), []) == whole


def test_device_batches_are_each_ranks_slice_of_the_one_process_batches():
    images = np.stack([fake_image(i % 10, i) for i in range(30)])
    labels = [i % 10 for i in range(30)]
    alone = list(DeviceBatches(images, labels, batch_size=10, seed=3, device="cpu"))
    halves = [
        list(DeviceBatches(images, labels, batch_size=10, seed=3, device="cpu", rank=r, world_size=2)) for r in (0, 1)
    ]
    assert len(alone) == len(halves[0]) == len(halves[1]) == 3
    for step, (batch, batch_labels) in enumerate(alone):
        assert torch.equal(torch.cat([halves[0][step][0], halves[1][step][0]]), batch)  # pixel for pixel
        assert torch.equal(torch.cat([halves[0][step][1], halves[1][step][1]]), batch_labels)


def test_the_loaders_of_two_ranks_split_each_batch_and_the_test_set(tiny_folder):
    shards = [loaders(tiny_folder, batch_size=10, workers=0, device="cpu", rank=r, world_size=2) for r in (0, 1)]
    for train, test in shards:
        assert [len(labels) for _, labels in train] == [5] * 4  # 40 images, 4 global batches of 10
        assert len(test.dataset) == 20  # the whole test set stays the dataset, for the run's fingerprint
    assert [list(test.sampler) for _, test in shards] == [list(range(10)), list(range(10, 20))]
    assert [list(shard_of(7, r, 3)) for r in range(3)] == [[0, 1], [2, 3], [4, 5, 6]]


def test_a_batch_that_does_not_divide_or_a_world_larger_than_the_data_is_one_line():
    config = profile("smoke", batch_size=15, train_per_class=8, test_per_class=1)
    with pytest.raises(ValueError, match=r"batch_size=15 does not divide by the world size 2") as caught:
        check_world(config, World(rank=0, size=2))
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match=r"world size 11 is larger than the test set \(10 images\)") as caught:
        check_world(config.replace(batch_size=11), World(rank=0, size=11))
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match=r"world size 3 is larger than the training set \(2 images\)"):
        check_shardable(3, 3, train_size=2)
    check_world(config, World())  # alone: any batch


# ------------------------------------------------------------------------------------------------- torchrun


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}  # as torchrun sets for each process
    env.pop("EVA9_PROFILE", None), env.pop("EVA9_EPOCHS", None)
    return env


def _torchrun(*args: str, nproc: int = 2) -> list[str]:
    port = str(_free_port())
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
            "--master-addr", "127.0.0.1", "--master-port", port, *args]  # fmt: skip


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=_env(), cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT, **kwargs)


def _fake_cifar(root: Path, offset: int = 0) -> Path:
    """A fake CIFAR-10 image folder: 8 training and 4 test images per class (``offset``: other images)."""
    from PIL import Image

    for split, n, first in (("train", 8, offset), ("test", 4, offset + 500)):
        for label, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(fake_image(label, first + i)).save(root / split / name / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def fake_cifar(tmp_path_factory) -> Path:
    """A fake CIFAR-10 image folder: 8 training and 4 test images per class."""
    return _fake_cifar(tmp_path_factory.mktemp("fake-cifar"))


@pytest.fixture(scope="module")
def one_process(fake_cifar, tmp_path_factory) -> Path:
    """The run trained by one process (no torchrun)."""
    out = tmp_path_factory.mktemp("one") / "run"
    done = _run([sys.executable, str(SCRIPT), str(fake_cifar), str(out)])
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def two_processes(fake_cifar, tmp_path_factory) -> tuple[Path, Path]:
    """The same run trained by 2 processes under torchrun, each recording what it did to the run folder."""
    base = tmp_path_factory.mktemp("two")
    out, audit = base / "run", base / "audit"
    done = _run(_torchrun(str(SCRIPT), str(fake_cifar), str(out), "--audit", str(audit)))
    assert done.returncode == 0, done.stderr[-3000:]
    return out, audit


def _assert_same_run(run: Path, reference: Path) -> None:
    """Per-epoch losses within LOSS_TOLERANCE, test accuracy equal, final weights within WEIGHT_TOLERANCE."""
    ours, theirs = History.load(run), History.load(reference)
    assert [e["epoch"] for e in ours.epochs] == [e["epoch"] for e in theirs.epochs] == [1, 2]
    assert ours.column("train_loss") == pytest.approx(theirs.column("train_loss"), rel=LOSS_TOLERANCE)
    assert ours.column("test_loss") == pytest.approx(theirs.column("test_loss"), rel=1e-5)
    assert ours.column("test_acc") == theirs.column("test_acc")
    assert ours.column("lr") == pytest.approx(theirs.column("lr"), rel=1e-9)
    metrics = [json.loads((folder / "metrics.json").read_text()) for folder in (run, reference)]
    assert metrics[0]["test_acc"] == metrics[1]["test_acc"] and metrics[0]["test_images"] == 40
    assert metrics[0]["confusion_matrix"] == metrics[1]["confusion_matrix"]
    weights = [torch.load(folder / "model.pt", weights_only=True) for folder in (run, reference)]
    assert weights[0].keys() == weights[1].keys()
    for name, tensor in weights[0].items():
        assert torch.allclose(tensor.double(), weights[1][name].double(), rtol=0, atol=WEIGHT_TOLERANCE), name


@distributed
def test_two_processes_train_what_one_process_trains(one_process, two_processes):
    _assert_same_run(two_processes[0], one_process)


@distributed
def test_rank_0_alone_writes_the_run_folder(two_processes):
    out, audit = two_processes
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, *RUN_FILES])  # the marker (its lock), no temp file
    by_rank = {rank: json.loads(Path(f"{audit}.{rank}").read_text()) for rank in (0, 1)}
    assert by_rank[1] == []  # rank 1 never opened, created, renamed or removed anything in the folder
    written = {Path(path).name for event, path in by_rank[0] if event == "os.rename"}
    assert {"checkpoint.pt", "history.json", "model.pt", "metrics.json"} <= written  # the audit does see rank 0


def _rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of the torchrun worker of ``rank`` started by ``launcher`` (Linux's /proc)."""
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environment = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if parent == launcher and f"RANK={rank}".encode() in environment:
            return int(entry.name)
    return None


@distributed
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's process through /proc")
def test_a_killed_rank_ends_the_group_and_the_run_resumes_at_either_world_size(fake_cifar, two_processes, tmp_path):
    out = tmp_path / "run"
    command = _torchrun(str(SCRIPT), str(fake_cifar), str(out), "--slow", "0.3")  # epoch 2: 5 steps of 0.3 s
    launcher = subprocess.Popen(command, env=_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and launcher.poll() is None:  # epoch 1 saved: the ranks are in epoch 2
            if (out / "history.json").is_file() and History.load(out).epochs:
                break
            time.sleep(0.02)
        time.sleep(0.3)
        victim = _rank_pid(launcher.pid, 1)
        assert victim is not None, "rank 1 not found"
        os.kill(victim, signal.SIGKILL)
        report = launcher.communicate(timeout=60)[0].decode()
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode != 0  # the group ended: torchrun stopped rank 0 and failed
    assert "the group stopped" in report and "Signal 9 (SIGKILL)" in report, report[-3000:]
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "checkpoint.pt", "config.json", "history.json"])
    assert [e["epoch"] for e in History.load(out).epochs] == [1]

    again_two, again_one = tmp_path / "two", tmp_path / "one"
    shutil.copytree(out, again_two), shutil.copytree(out, again_one)
    done = _run(_torchrun(str(SCRIPT), str(fake_cifar), str(again_two), "--resume"))
    assert done.returncode == 0, done.stderr[-3000:]
    done = _run([sys.executable, str(SCRIPT), str(fake_cifar), str(again_one), "--resume"])
    assert done.returncode == 0, done.stderr[-3000:]
    for resumed in (again_two, again_one):
        _assert_same_run(resumed, two_processes[0])
    before = {p.name: p.stat().st_mtime_ns for p in again_two.iterdir()}
    done = _run(_torchrun(str(SCRIPT), str(fake_cifar), str(again_two), "--resume"))  # finished: nothing to do
    assert done.returncode == 0, done.stderr[-3000:]
    assert {p.name: p.stat().st_mtime_ns for p in again_two.iterdir()} == before


def _two_nodes(data: list[Path], out: Path) -> tuple[list[int], str]:
    """Two torchrun launchers of one process each, meeting at a c10d rendezvous on 127.0.0.1, each reading its own
    data folder: their exit codes and their output."""
    endpoint = f"127.0.0.1:{_free_port()}"
    nodes = []
    for rank in (0, 1):
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1"]
        command += ["--node-rank", str(rank), "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint]
        command += ["--rdzv-id", "eva9-test", str(SCRIPT), str(data[rank]), str(out)]
        nodes.append(subprocess.Popen(command, env=_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    try:
        reports = [node.communicate(timeout=TIMEOUT)[0].decode() for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
    return [node.returncode for node in nodes], "\n".join(reports)


@distributed
def test_two_nodes_meet_at_a_c10d_rendezvous_on_loopback(fake_cifar, one_process, tmp_path):
    codes, report = _two_nodes([fake_cifar, fake_cifar], tmp_path / "run")
    assert codes == [0, 0], report[-3000:]
    _assert_same_run(tmp_path / "run", one_process)


@distributed
def test_a_node_with_other_data_is_refused(fake_cifar, tmp_path):
    other = _fake_cifar(tmp_path / "other", offset=1000)
    codes, report = _two_nodes([fake_cifar, other], tmp_path / "run")
    assert codes[0] != 0 and codes[1] != 0
    assert "differs from rank 0's" in report, report[-3000:]
    assert not (tmp_path / "run").exists()  # rank 0 had written nothing yet


@distributed
def test_torchrun_eva9_train_refuses_a_batch_that_does_not_divide_in_one_line(fake_cifar, tmp_path):
    out = tmp_path / "run"
    done = _run(
        _torchrun("-m", "eva9", "train", "--profile", "smoke", "--data-dir", str(fake_cifar), "--train-per-class", "8",
                  "--test-per-class", "4", "--batch-size", "15", "--workers", "0", "--device", "cpu", "--out", str(out))
    )  # fmt: skip
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("eva9 train: error:")]
    assert len(errors) == 1, done.stderr[-3000:]  # rank 0 says it; rank 1 stops quietly
    assert "--batch-size 15 does not divide by the world size 2" in errors[0]
    assert done.stdout.count("eva9 train: profile smoke") == 1  # rank 0 alone prints
    assert not out.exists()


def test_synchronised_batchnorm_keeps_the_tensors_and_is_batchnorm_outside_a_group():
    from eva9.models import resnet18
    from eva9.train.distributed import GroupBatchNorm2d, sync_batchnorm

    torch.manual_seed(0)
    plain = resnet18()
    synced = resnet18()
    before = dict(synced.named_parameters())
    synced = sync_batchnorm(synced, torch.device("cpu"))
    synced.load_state_dict(plain.state_dict())
    assert not any(type(m) is torch.nn.BatchNorm2d for m in synced.modules())
    assert sum(isinstance(m, GroupBatchNorm2d) for m in synced.modules()) == 20
    assert synced.state_dict().keys() == plain.state_dict().keys()
    assert all(tensor is before[name] for name, tensor in synced.named_parameters())  # the optimizer's own
    x = torch.randn(4, 3, 32, 32)
    for mode in (True, False):
        plain.train(mode), synced.train(mode)
        assert torch.equal(synced(x), plain(x))  # alone, training or not: BatchNorm itself


def test_the_command_line_can_turn_batchnorm_synchronisation_off():
    from eva9.cli import _config_overrides, build_parser

    args = build_parser().parse_args(["train", "--no-sync-batchnorm"])
    assert _config_overrides(args)["sync_batchnorm"] is False
    assert "sync_batchnorm" not in _config_overrides(build_parser().parse_args(["train"]))
    assert profile("smoke").sync_batchnorm is True
    with pytest.raises(ValueError, match="sync_batchnorm"):
        profile("smoke", sync_batchnorm="yes")


def test_fit_builds_each_ranks_slices_on_the_device_path_too(tiny_folder):
    from eva9.train.parts import _loaders

    config = profile("smoke", batch_size=10, train_per_class=4, test_per_class=2, workers=0, device="cpu")
    config = config.replace(data_dir=str(tiny_folder), augment_on="device")
    alone = list(_loaders(config, torch.device("cpu"))[0])
    ranks = [_loaders(config, torch.device("cpu"), rank, 2) for rank in (0, 1)]
    assert [type(train).__name__ for train, _ in ranks] == ["DeviceBatches"] * 2
    passes = [list(train) for train, _ in ranks]  # each pass is the next epoch: one each
    for step, (images, labels) in enumerate(alone):
        assert torch.equal(torch.cat([batches[step][0] for batches in passes]), images)
        assert torch.equal(torch.cat([batches[step][1] for batches in passes]), labels)
    assert [list(test.sampler) for _, test in ranks] == [list(range(10)), list(range(10, 20))]
