"""eva9.train: profiles and config checks, the epoch loop, fit's run folder, resume after SIGKILL, NaN guard."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from eva9 import train
from eva9.train import (
    ENV_EPOCHS,
    ENV_PROFILE,
    PROFILES,
    RUN_FILES,
    History,
    NonFiniteLossError,
    TrainConfig,
    evaluate,
    fit,
    load_run,
    predict,
    profile,
    prune,
    train_one_epoch,
)
from eva9.train import parts as engine_parts
from eva9.train import runs as engine_runs

REPO = Path(__file__).resolve().parents[1]

# Tiny model and synthetic data for behaviour that does not need ResNet18 (written out so a subprocess can use it).
HELPERS = '''
import time
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 10))


class Slow(nn.Module):
    """Sleeps in every training forward, so that a test can kill the run mid-epoch."""

    def __init__(self, inner, seconds):
        super().__init__()
        self.inner, self.seconds = inner, seconds

    def forward(self, x):
        if self.training:
            time.sleep(self.seconds)
        return self.inner(x)


def tiny_loaders(n_train=40, n_test=20, batch_size=10, seed=0):
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(n_train + n_test, 3, 8, 8, generator=g)
    y = torch.arange(n_train + n_test) % 10
    x = x + y.view(-1, 1, 1, 1) * 0.1  # a little signal, so accuracy can move
    train = DataLoader(TensorDataset(x[:n_train], y[:n_train]), batch_size=batch_size, shuffle=True,
                       drop_last=True, generator=torch.Generator().manual_seed(seed))
    test = DataLoader(TensorDataset(x[n_train:], y[n_train:]), batch_size=batch_size)
    return train, test
'''
namespace: dict = {}
exec(compile(HELPERS, "<tiny helpers>", "exec"), namespace)
tiny_model, tiny_loaders, Slow = namespace["tiny_model"], namespace["tiny_loaders"], namespace["Slow"]


@pytest.fixture(autouse=True)
def _no_env_profile(monkeypatch):
    monkeypatch.delenv(ENV_PROFILE, raising=False)
    monkeypatch.delenv(ENV_EPOCHS, raising=False)


def tiny_config(**overrides) -> TrainConfig:
    return profile("seed", **{"epochs": 2, "batch_size": 10, "workers": 0, "device": "cpu", **overrides})


def tiny_fit(out=None, model=None, resume=False, **overrides) -> History:
    train, test = tiny_loaders()
    return fit(
        tiny_config(**overrides),
        model=model if model is not None else tiny_model(),
        out=out,
        resume=resume,
        quiet=True,
        train_loader=train,
        test_loader=test,
    ).history


# ----------------------------------------------------------------------------------------------------- profiles


def test_seed_profile_is_the_reference_recipe():
    c = profile("seed")
    assert (c.epochs, c.batch_size, c.lr, c.momentum, c.schedule) == (50, 128, 0.01, 0.9, "constant")
    assert (c.nesterov, c.weight_decay, c.label_smoothing) == (False, 0.0, 0.0)
    assert c.train_per_class is None and c.test_per_class is None


def test_fast_profile_is_a_one_cycle_recipe_and_smoke_is_500_by_250():
    fast = profile("fast")
    assert (fast.schedule, fast.nesterov, fast.batch_size, fast.epochs) == ("onecycle", True, 512, 30)
    assert fast.weight_decay > 0 and fast.label_smoothing > 0
    smoke = profile("smoke")
    assert smoke.epochs == 1 and smoke.train_size == 500 and smoke.test_per_class * 10 == 250
    assert smoke.batch_size <= smoke.train_size


def test_cpu_profile_is_the_fast_recipe_for_a_few_epochs_on_a_subset_tested_on_100_images_per_class():
    cpu, fast = profile("cpu"), profile("fast")
    recipe = ("schedule", "warmup", "nesterov", "momentum", "weight_decay", "label_smoothing", "model")
    assert all(getattr(cpu, name) == getattr(fast, name) for name in recipe)
    assert cpu.lr == pytest.approx(fast.lr * cpu.batch_size / fast.batch_size)  # fast's step per image
    assert 3 <= cpu.epochs < fast.epochs and cpu.test_per_class == 100
    assert cpu.train_per_class is not None and cpu.train_size < 50_000 and cpu.batch_size < cpu.train_size


def test_overrides_and_environment(monkeypatch):
    assert profile("fast", epochs=8, lr=0.1).epochs == 8
    monkeypatch.setenv(ENV_PROFILE, "smoke")
    assert profile().profile == "smoke"
    assert profile("seed").profile == "seed"  # the environment only picks the profile when none is named
    monkeypatch.setenv(ENV_EPOCHS, "3")
    assert profile("fast").epochs == 3
    assert profile("fast", epochs=5).epochs == 5  # an explicit override wins over the environment
    monkeypatch.setenv(ENV_EPOCHS, "many")
    with pytest.raises(ValueError, match=ENV_EPOCHS):
        profile("seed")


def test_unknown_profile_lists_the_choices():
    with pytest.raises(ValueError, match="seed, fast, cpu, smoke"):
        profile("fastest")
    assert set(PROFILES) == {"seed", "fast", "cpu", "smoke"}


@pytest.mark.parametrize(
    "field, value",
    [
        ("epochs", 0),
        ("epochs", -3),
        ("schedule", "linear"),
        ("batch_size", 0),
        ("lr", -0.1),
        ("lr", float("nan")),
        ("momentum", 1.5),
        ("label_smoothing", 1.0),
        ("train_per_class", 0),
        ("test_per_class", 1001),
        ("device", "gpu0"),
        ("workers", -1),
    ],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field}="):
        profile("seed", **{field: value})


def test_batch_larger_than_the_subset_is_refused():
    with pytest.raises(ValueError, match=r"batch_size=.*larger than the training set \(500 images"):
        profile("smoke", batch_size=501)
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        profile("seed", epoch=3)


def test_bad_config_fails_before_any_work(tmp_path):
    config = TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="epochs"):
        fit(config, out=tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


def test_config_round_trips_through_json():
    config = profile("fast", seed=7, test_per_class=10)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


# ----------------------------------------------------------------------------------------- epoch and evaluation


def test_evaluate_and_predict_restore_the_mode_and_agree():
    model, (_, test) = tiny_model(), tiny_loaders()
    for training in (True, False):
        model.train(training)
        loss, acc = evaluate(model, test)
        assert model.training is training
    out = predict(model, test)
    assert out.logits.shape == (20, 10) and out.labels.tolist() == [y for _, ys in test for y in ys.tolist()]
    assert loss == pytest.approx(nn.functional.cross_entropy(out.logits, out.labels).item(), rel=1e-6)
    assert acc == pytest.approx((out.preds == out.labels).double().mean().item())


def test_flip_tta_scores_the_mean_logits_of_each_image_and_its_mirror():
    model, (_, test) = tiny_model(), tiny_loaders()
    model.eval()
    images = torch.cat([x for x, _ in test])
    with torch.no_grad():
        expected = (model(images) + model(images.flip(-1))) / 2
    out = predict(model, test, tta=True)
    torch.testing.assert_close(out.logits, expected)
    assert not torch.allclose(out.logits, predict(model, test).logits), "the mirror image must change the logits"
    loss, acc = evaluate(model, test, tta=True)
    assert loss == pytest.approx(nn.functional.cross_entropy(expected, out.labels).item(), rel=1e-6)
    assert acc == pytest.approx((expected.argmax(1) == out.labels).double().mean().item())


def test_train_one_epoch_averages_the_loss_over_samples():
    model, (train, _) = tiny_model(), tiny_loaders()
    frozen = torch.optim.SGD(model.parameters(), lr=0.0)  # weights never move, so the epoch mean is a plain mean
    loss, acc = train_one_epoch(model, train, frozen, nn.CrossEntropyLoss(), "cpu")
    expected_loss, expected_acc = evaluate(model, train)
    assert loss == pytest.approx(expected_loss, rel=1e-6) and acc == pytest.approx(expected_acc)


@pytest.mark.filterwarnings("ignore:torch.cuda.amp.GradScaler is enabled, but CUDA is not available")
@pytest.mark.parametrize("capability, dtype, scaled", [((7, 5), torch.float16, True), ((9, 0), torch.bfloat16, False)])
def test_cuda_amp_is_fp16_with_a_scaler_before_ampere_and_bf16_after(monkeypatch, capability, dtype, scaled):
    # A T4 (7.5) can emulate bf16, slowly; it must get fp16 and a GradScaler. An H100 (9.0) gets bf16, unscaled.
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    cuda = torch.device("cuda")
    assert engine_parts._amp_dtype(cuda, amp=True) == dtype
    assert engine_parts._amp_dtype(cuda, amp=False) is None
    assert engine_parts._amp_dtype(torch.device("cpu"), amp=True) is None
    assert (engine_parts._grad_scaler(dtype) is not None) == scaled


# ---------------------------------------------------------------------------------------------------------- fit


def test_a_two_step_resnet18_fit_writes_every_run_file(tiny_folder, tmp_path):
    out = tmp_path / "run"
    config = profile(
        "smoke", train_per_class=1, test_per_class=1, batch_size=5, workers=0, device="cpu", data_dir=str(tiny_folder)
    )
    history = fit(config, out=out, quiet=True).history  # model=None: ResNet18, 10 images / batch 5 = 2 steps
    assert sorted(p.name for p in out.iterdir()) == sorted([".eva9-run", *RUN_FILES])  # the marker, then the run
    [record] = history.epochs
    assert set(record) == {
        "epoch",
        "train_loss",
        "train_acc",
        "test_loss",
        "test_acc",
        "lr",
        "seconds",
        "train_images_per_s",
        "eval_images_per_s",
    }
    assert record["epoch"] == 1 and 0 <= record["test_acc"] <= 1
    # 10 training and 10 test images, each part taking some of the epoch's seconds
    assert (
        record["train_images_per_s"] > 10 / record["seconds"] and record["eval_images_per_s"] > 10 / record["seconds"]
    )
    assert History.load(out) == history and TrainConfig.load(out) == config
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_acc"] == pytest.approx(record["test_acc"]) and metrics["test_images"] == 10
    assert sum(map(sum, metrics["confusion_matrix"])) == 10 and len(metrics["class_accuracy"]) == 10
    assert {"wall_seconds", "device", "versions"} <= set(metrics) and metrics["versions"]["torch"]
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 1 and {"optimizer", "scheduler", "scaler", "rng"} <= set(checkpoint)
    run = load_run(out)
    assert run.config == config and run.history == history and not run.model.training
    saved = torch.load(out / "model.pt", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in run.model.state_dict().items())


def test_same_seed_gives_the_same_first_epoch_loss(tiny_folder):
    # The real data path (stratified subset, seeded shuffling and augmentation), with a tiny model for speed.
    def first_loss(seed):
        config = profile(
            "smoke",
            epochs=1,
            train_per_class=4,
            test_per_class=1,
            batch_size=10,
            workers=0,
            device="cpu",
            data_dir=str(tiny_folder),
            seed=seed,
        )
        return fit(config, model=tiny_model(), quiet=True).history.epochs[0]["train_loss"]

    first = first_loss(0)
    assert first_loss(0) == first
    assert first_loss(1) != first


def test_fit_refuses_to_overwrite_a_run(tmp_path):
    tiny_fit(tmp_path / "run", epochs=1)
    with pytest.raises(ValueError, match="already holds a run; pass resume=True"):
        tiny_fit(tmp_path / "run", epochs=1)


def test_resume_starts_a_run_where_there_is_none(tmp_path):
    assert len(tiny_fit(tmp_path / "new", resume=True, epochs=1)) == 1
    assert (tmp_path / "new" / "model.pt").is_file()


def test_resuming_a_finished_run_returns_it_untouched(tmp_path):
    out = tmp_path / "run"
    history = tiny_fit(out, epochs=1)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert tiny_fit(out, resume=True, epochs=1) == history
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_resume_with_another_config_is_refused_but_a_constant_run_may_grow(tmp_path):
    out = tmp_path / "run"
    tiny_fit(out, epochs=1)
    with pytest.raises(ValueError, match=r"lr: 0.01 -> 0.02"):
        tiny_fit(out, resume=True, epochs=1, lr=0.02)
    extended = tiny_fit(out, resume=True, epochs=2)
    assert [e["epoch"] for e in extended.epochs] == [1, 2]
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2

    cycle = tmp_path / "cycle"
    tiny_fit(cycle, epochs=1, schedule="onecycle")
    with pytest.raises(ValueError, match="onecycle schedule depends on the total number of epochs"):
        tiny_fit(cycle, resume=True, epochs=2, schedule="onecycle")


def test_resume_after_sigkill_mid_epoch_matches_an_uninterrupted_run(tmp_path):
    (tmp_path / "tiny_helpers.py").write_text(HELPERS)
    script = tmp_path / "train_slowly.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from tiny_helpers import Slow, tiny_loaders, tiny_model
        from eva9.train import fit, profile

        train, test = tiny_loaders()
        config = profile("seed", epochs=4, batch_size=10, lr=0.05, schedule="onecycle", workers=0, device="cpu")
        fit(config, model=Slow(tiny_model(), 0.1), out=sys.argv[1], resume=sys.argv[2] == "resume", quiet=True,
            train_loader=train, test_loader=test)
    """)
    )
    reference = tiny_fit(model=Slow(tiny_model(), 0.0), epochs=4, lr=0.05, schedule="onecycle")

    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, str(script), str(out), "fresh"], env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:  # wait for epoch 1 to be saved
            if (out / "history.json").is_file() and History.load(out).epochs:
                break
            time.sleep(0.02)
        time.sleep(0.15)  # an epoch takes 4 x 0.1 s: this lands inside epoch 2
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    interrupted = History.load(out)
    assert 1 <= len(interrupted) < 4 and not (out / "model.pt").exists()

    done = subprocess.run([sys.executable, str(script), str(out), "resume"], env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 0
    resumed = History.load(out)
    assert [e["epoch"] for e in resumed.epochs] == [1, 2, 3, 4]
    assert resumed.epochs[: len(interrupted)] == interrupted.epochs  # earlier epochs kept as they were
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "lr"):  # same optimizer, schedule and data order
        assert resumed.column(key) == pytest.approx(reference.column(key), rel=1e-5), key


# ---------------------------------------------------------------------------------------------------- NaN guard


class ExplodesAfter(nn.Module):
    """A tiny model whose output turns NaN after ``steps`` training forwards."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.inner, self.steps, self.calls = tiny_model(), steps, 0

    def forward(self, x):
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls > self.steps:
                out = out * float("nan")
        return out


def test_a_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"nan at epoch 2, step 3 of 4") as caught:
        tiny_fit(out, model=ExplodesAfter(steps=6), epochs=3)  # 4 steps per epoch: step 7 = epoch 2, step 3
    assert (caught.value.epoch, caught.value.step) == (2, 3)
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert [e["epoch"] for e in History.load(out).epochs] == [1]
    assert not (out / "model.pt").exists()
    run = load_run_tiny(out)
    assert all(torch.isfinite(p).all() for p in run.parameters())


def load_run_tiny(out: Path) -> nn.Module:
    """The last checkpoint's weights in a fresh tiny model (load_run builds ResNet18, which would not fit)."""
    model = ExplodesAfter(steps=0)
    model.load_state_dict(torch.load(out / "checkpoint.pt", weights_only=True)["model"])
    return model


def test_a_huge_learning_rate_is_caught_in_the_first_epoch():
    with pytest.raises(NonFiniteLossError, match=r"at epoch 1, step \d+ of 4 \(lr 1e\+30\)"):
        tiny_fit(lr=1e30, epochs=1)


@pytest.mark.parametrize("sync_every_step", [True, False])  # False: the GPU way, checked every few steps on device
def test_train_one_epoch_names_the_first_non_finite_step(sync_every_step):
    model, (train, _) = ExplodesAfter(steps=2), tiny_loaders()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(NonFiniteLossError, match=r"at epoch 5, step 3 of 4") as caught:
        train_one_epoch(
            model,
            train,
            optimizer,
            nn.CrossEntropyLoss(),
            "cpu",
            epoch=5,
            refresh_every=2,
            sync_every_step=sync_every_step,
        )
    assert caught.value.step == 3


# --------------------------------------------------------------------------------------------------------- CUDA

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
def test_cuda_fit_trains_channels_last_with_amp_from_pinned_worker_batches(tiny_folder, tmp_path):
    from eva9.data import loaders

    config = profile(
        "smoke",
        epochs=2,
        train_per_class=4,
        test_per_class=2,
        batch_size=10,
        workers=2,
        device="cuda",
        data_dir=str(tiny_folder),
    )
    train, test = loaders(tiny_folder, batch_size=10, workers=2, train_per_class=4, test_per_class=2, device="cuda")
    images, _ = next(iter(train))
    assert train.pin_memory and test.pin_memory and images.is_pinned()
    history = fit(config, out=tmp_path / "run", quiet=True).history
    assert [e["epoch"] for e in history.epochs] == [1, 2]
    assert all(torch.isfinite(torch.tensor(e["train_loss"])) for e in history.epochs)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["device"] == torch.cuda.get_device_name(0) and metrics["test_images"] == 20
    run = load_run(tmp_path / "run")  # saved from a channels-last CUDA model, loaded on the CPU
    assert next(run.model.parameters()).device.type == "cpu"
    on_cpu = evaluate(run.model, test)
    on_gpu = evaluate(run.model.cuda().to(memory_format=torch.channels_last), test)
    assert on_gpu[1] == pytest.approx(on_cpu[1], abs=0.051)  # at most one of 20 images may flip under TF32


@needs_cuda
@pytest.mark.parametrize("amp_dtype", [torch.bfloat16, torch.float16, None])
def test_cuda_epoch_learns_under_each_precision(amp_dtype):
    from eva9.train.parts import _grad_scaler

    model, (train, _) = tiny_model().cuda(), tiny_loaders()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    scaler = _grad_scaler(amp_dtype)
    assert (scaler is not None) == (amp_dtype == torch.float16)
    before = evaluate(model, train)[0]
    for _ in range(5):
        loss, _ = train_one_epoch(
            model, train, optimizer, nn.CrossEntropyLoss(), "cuda", scaler=scaler, amp_dtype=amp_dtype
        )
    assert loss < before and evaluate(model, train)[0] < before


@needs_cuda
def test_cuda_deferred_nan_check_names_the_first_bad_step():
    model, (train, _) = ExplodesAfter(steps=2).cuda(), tiny_loaders()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(NonFiniteLossError, match=r"NaN or infinite at epoch 5, step 3 of 4") as caught:
        train_one_epoch(model, train, optimizer, nn.CrossEntropyLoss(), "cuda", epoch=5, refresh_every=4)
    assert caught.value.step == 3


# ---------------------------------------------------------------------------------- finished runs are kept (#12)


def test_a_finished_run_without_its_checkpoint_is_returned_as_is_not_retrained(tmp_path):
    out = tmp_path / "run"
    history = tiny_fit(out, epochs=2)
    (out / "checkpoint.pt").unlink()  # twice the size of model.pt, so people delete it
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()}
    assert tiny_fit(out, resume=True, epochs=2) == history
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()} == before
    with pytest.raises(ValueError, match="already holds a run; pass resume=True"):
        tiny_fit(out, epochs=2)  # a new run refuses to start over a finished one
    with pytest.raises(ValueError, match="checkpoint.pt was dropped, so it cannot grow to 3 epochs"):
        tiny_fit(out, resume=True, epochs=3)
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()} == before


def test_prune_drops_only_the_checkpoint_of_a_finished_run(tmp_path, monkeypatch):
    monkeypatch.setattr(engine_runs, "build_model", lambda name: tiny_model())  # load_run rebuilds the tiny model
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="holds no finished run"):
        prune(out)
    history = tiny_fit(out, epochs=1)
    size = (out / "checkpoint.pt").stat().st_size
    assert prune(out) == size and prune(out) == 0
    kept = [".eva9-run", "config.json", "history.json", "metrics.json", "model.pt"]
    assert sorted(p.name for p in out.iterdir()) == kept
    assert load_run(out).history == history and tiny_fit(out, resume=True, epochs=1) == history


def test_an_interrupted_extension_leaves_no_final_files_of_the_shorter_run(tmp_path, monkeypatch):
    monkeypatch.setattr(engine_runs, "build_model", lambda name: tiny_model())  # load_run rebuilds the tiny model
    out = tmp_path / "run"
    tiny_fit(out, epochs=1)
    old_weights = (out / "model.pt").read_bytes()

    model, calls = tiny_model(), []

    def stop_in_the_second_step(module, args):  # Ctrl-C in the second step of epoch 2
        if module.training:
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt

    model.register_forward_pre_hook(stop_in_the_second_step)
    train_loader, test_loader = tiny_loaders()
    with pytest.raises(KeyboardInterrupt):
        fit(
            tiny_config(epochs=2),
            model=model,
            out=out,
            resume=True,
            quiet=True,
            train_loader=train_loader,
            test_loader=test_loader,
        )
    assert not (out / "model.pt").exists() and not (out / "metrics.json").exists()
    assert len(History.load(out)) == 1
    run = load_run(out)  # the checkpoint of epoch 1: the state history.json describes
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(run.model.state_dict()[k], v) for k, v in checkpoint["model"].items())

    extended = tiny_fit(out, resume=True, epochs=2)
    assert [e["epoch"] for e in extended.epochs] == [1, 2]
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 2
    assert (out / "model.pt").read_bytes() != old_weights
    final = torch.load(out / "model.pt", weights_only=True)
    assert all(torch.equal(load_run(out).model.state_dict()[k], v) for k, v in final.items())


# ------------------------------------------------------------------------ same seed, same batches (#12, item 3)


class Recorder(nn.Module):
    """A tiny model for 32×32 images that keeps a copy of every training batch it sees."""

    def __init__(self, batches: list, stop_at: int | None = None) -> None:
        super().__init__()
        self.inner, self.batches, self.stop_at = tiny_model(), batches, stop_at

    def forward(self, x):
        if self.training:
            if self.stop_at is not None and len(self.batches) == self.stop_at:
                raise KeyboardInterrupt
            self.batches.append(x.detach().clone())
        return self.inner(x)


@pytest.mark.parametrize("workers", [0, 2])
def test_resumed_and_uninterrupted_real_runs_see_identical_batches_whatever_the_workers(cifar_root, tmp_path, workers):
    config = profile(
        "smoke",
        epochs=3,
        train_per_class=2,
        test_per_class=1,
        batch_size=10,
        workers=workers,
        device="cpu",
        data_dir=str(cifar_root),
    )  # 20 real images, augmented: 2 steps per epoch

    reference: list = []
    fit(config.replace(workers=0), model=Recorder(reference), out=tmp_path / "reference", quiet=True)

    seen: list = []
    with pytest.raises(KeyboardInterrupt):  # stopped in the second step of epoch 2
        fit(config, model=Recorder(seen, stop_at=3), out=tmp_path / "run", quiet=True)
    assert len(History.load(tmp_path / "run")) == 1
    del seen[2:]  # the batches of the epoch that did not finish
    fit(config, model=Recorder(seen), out=tmp_path / "run", resume=True, quiet=True)

    assert len(seen) == len(reference) == 6
    for step, (mine, theirs) in enumerate(zip(seen, reference)):
        assert torch.equal(mine, theirs), f"step {step + 1} differs"
    assert not torch.equal(reference[0], reference[2]), "epoch 2 shuffles and augments anew"
    final, expected = (
        torch.load(d / "model.pt", weights_only=True) for d in (tmp_path / "run", tmp_path / "reference")
    )
    assert all(torch.equal(final[k], expected[k]) for k in expected), "same batches, same device: same weights"


# ------------------------------------------------------------------------------- settings that say what they do


def test_one_cycle_keeps_the_configured_momentum():
    model = tiny_model()
    config = tiny_config(schedule="onecycle", lr=0.1, momentum=0.9, epochs=3)
    parts = engine_parts._training_parts(model, config, torch.device("cpu"), steps_per_epoch=4)
    momenta = []
    for _ in range(12):
        parts.optimizer.step()
        parts.scheduler.step()
        momenta.append(parts.optimizer.param_groups[0]["momentum"])
    assert momenta == [0.9] * 12
    assert max(g["lr"] for g in parts.optimizer.param_groups) < 0.1  # the lr does follow its cycle


def test_recorded_metrics_are_float32_even_when_training_uses_autocast(tmp_path, monkeypatch):
    monkeypatch.setattr(engine_parts, "_amp_dtype", lambda device, amp: torch.bfloat16)  # CPU autocast runs bf16 too
    monkeypatch.setattr(engine_runs, "build_model", lambda name: tiny_model())  # load_run rebuilds the tiny model
    out = tmp_path / "run"
    history = tiny_fit(out, epochs=1)
    _, test = tiny_loaders()
    loss, accuracy = evaluate(load_run(out).model, test)  # float32, as `eva9 evaluate` and the book score it
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_loss"] == loss == history.epochs[-1]["test_loss"]
    assert metrics["test_acc"] == accuracy


@pytest.mark.parametrize(
    "setting, device_type, expected",
    [
        (None, "cuda", True),
        (None, "cpu", train.CHANNELS_LAST_ON_CPU),
        (False, "cuda", False),
        (True, "cpu", True),
        (None, "mps", False),
    ],
)
def test_channels_last_follows_the_config_or_the_measured_default(setting, device_type, expected):
    config = tiny_config(channels_last=setting)
    assert engine_parts._wants_channels_last(config, torch.device(device_type)) == expected


def test_a_channels_last_cpu_epoch_feeds_channels_last_batches_and_learns_the_same():
    def run(channels_last):
        model = tiny_model()
        config = tiny_config(channels_last=channels_last)
        parts = engine_parts._training_parts(model, config, torch.device("cpu"), 4)
        train_loader, _ = tiny_loaders()
        seen = []
        model.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous()))
        loss, _ = train_one_epoch(model, train_loader, parts.optimizer, parts.criterion, "cpu")
        return loss, seen

    plain, last = run(False), run(True)
    assert all(plain[1]) and not any(last[1])
    assert last[0] == pytest.approx(plain[0], rel=1e-4)
