"""Training: configuration profiles, one explicit epoch loop, evaluation, run folders and resume.

Written in the style of torchvision's ``references/classification/train.py``: :func:`train_one_epoch` trains one
epoch, evaluation (:func:`evaluate`, :func:`predict`) is separate, and one checkpoint holds everything a resumed
run needs. :func:`fit` ties them together and keeps a run folder::

    out/config.json      the TrainConfig
    out/history.json     one record per finished epoch, rewritten after every epoch
    out/checkpoint.pt    model, optimizer, scheduler, scaler, epoch, RNG states, history (atomic: temp + rename)
    out/model.pt         final weights (a state_dict)
    out/metrics.json     final test loss/accuracy, per-class accuracy, confusion matrix, wall time, device, versions

A folder holding ``model.pt`` and ``metrics.json`` is a finished run: ``fit`` never trains there again unless asked
to extend it, and :func:`prune` drops its ``checkpoint.pt`` (twice the size of ``model.pt``) when only the
weights are wanted. ``metrics.json`` is written last and removed first, so the two exist only while they describe
the same state as ``history.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .utils import pick_device, seed_everything

__all__ = [
    "SCHEDULES",
    "PROFILES",
    "ENV_PROFILE",
    "ENV_EPOCHS",
    "NonFiniteLossError",
    "TrainConfig",
    "profile",
    "History",
    "Predictions",
    "Run",
    "evaluate",
    "predict",
    "train_one_epoch",
    "fit",
    "load_run",
    "prune",
    "build_model",
    "CHANNELS_LAST_ON_CPU",
]

SCHEDULES: tuple[str, ...] = ("constant", "onecycle", "cosine")
"""Learning-rate schedules: constant; one-cycle (warm up to ``lr``, anneal to ~0); cosine from ``lr`` to 0."""

ENV_PROFILE = "EVA9_PROFILE"
"""Environment variable naming the profile that ``profile()`` (no name) returns."""

ENV_EPOCHS = "EVA9_EPOCHS"
"""Environment variable overriding every profile's number of epochs (an explicit ``epochs=`` still wins)."""

DEFAULT_PROFILE = "seed"

_MODELS = ("resnet18", "resnet34")

RUN_FILES = ("config.json", "history.json", "checkpoint.pt", "model.pt", "metrics.json")

CHANNELS_LAST_ON_CPU = True
"""Whether ``channels_last=None`` (auto) trains channels-last on the CPU too, as it always does on CUDA.

Measured by ``benchmarks/bench_engine.py`` (``benchmarks/results/engine.json``): on this project's 2-core CPU one
ResNet18 training step of 128 ran 1.14× faster channels-last (17.3 against 14.5 images/s, 8 interleaved rounds,
2 torch threads; the issue's own A/B gave 1.26×). Other CPUs may differ: set ``TrainConfig.channels_last``."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the epoch and step."""

    def __init__(self, message: str, epoch: int | None = None, step: int | None = None) -> None:
        super().__init__(message)
        self.epoch, self.step = epoch, step


# ------------------------------------------------------------------------------------------------ configuration


def _read_run_json(path: str | os.PathLike, filename: str, hint: str) -> Any:
    """The JSON in ``path``, or in ``path/filename`` when ``path`` is a run folder."""
    path = Path(path)
    if path.is_dir():
        path = path / filename
    if not path.is_file():
        raise FileNotFoundError(f"no {filename} at {path}: {hint}")
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass
class TrainConfig:
    """Everything that defines a training run. Build one with :func:`profile`; check it with :meth:`validate`."""

    profile: str = "custom"
    model: str = "resnet18"
    epochs: int = 50
    batch_size: int = 128
    lr: float = 0.01
    """Constant learning rate, or the peak of one-cycle / the start of cosine."""
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup: float = 0.25
    """One-cycle only: fraction of all steps spent rising to ``lr`` (OneCycleLR's ``pct_start``)."""
    label_smoothing: float = 0.0
    seed: int = 0
    train_per_class: int | None = None
    """Stratified training subset, images per class (None = all 5,000)."""
    test_per_class: int | None = None
    """Stratified test subset, images per class (None = all 1,000)."""
    device: str = "auto"
    """"auto" (CUDA → MPS → CPU), "cpu", "cuda", "cuda:1", "mps"."""
    amp: bool = True
    """Mixed precision on CUDA (bf16 where supported, else fp16 with a GradScaler) for training; ignored elsewhere.
    The recorded test metrics are always computed in float32."""
    channels_last: bool | None = None
    """Train channels-last; None = automatic: on CUDA, and on the CPU where :data:`CHANNELS_LAST_ON_CPU` says the
    benchmark measured it faster."""
    workers: int | None = None
    """Loader worker processes (None = eva9.data.default_workers())."""
    data_dir: str | None = None
    """CIFAR-10 folder; None = $EVA9_DATA_DIR, else torchvision's download into ./data."""

    # Fields that may differ when a run is resumed: they change where and how fast it runs, not what it computes.
    # ``epochs`` may also change (to extend a run) when the schedule is constant; see fit().
    RESUMABLE: ClassVar[tuple[str, ...]] = ("device", "workers", "data_dir", "amp", "channels_last")

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (the layout of ``config.json``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """The inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; known: {sorted(names)}")
        return cls(**d)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TrainConfig":
        """Read ``config.json`` (or the one inside a run folder)."""
        return cls.from_dict(_read_run_json(path, "config.json", "is it a run folder written by fit(out=...)?"))

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with some fields changed (unknown names are an error)."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    @property
    def train_size(self) -> int:
        """Number of training images the config trains on."""
        return 50_000 if self.train_per_class is None else 10 * self.train_per_class

    def validate(self) -> "TrainConfig":
        """Raise ValueError naming the first bad field; return self when all are fine."""

        def bad(name: str, why: str) -> None:
            raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r}: {why}")

        def is_int(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        def is_number(value: Any) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        if self.model not in _MODELS:
            bad("model", f"unknown model; choose one of {', '.join(_MODELS)}")
        if not is_int(self.epochs) or self.epochs < 1:
            bad("epochs", "must be an integer >= 1")
        if not is_int(self.batch_size) or self.batch_size < 1:
            bad("batch_size", "must be an integer >= 1")
        if not is_number(self.lr) or self.lr <= 0:
            bad("lr", "must be a finite number > 0")
        if not is_number(self.momentum) or not 0 <= self.momentum < 1:
            bad("momentum", "must lie in [0, 1)")
        if not isinstance(self.nesterov, bool):
            bad("nesterov", "must be True or False")
        if self.nesterov and self.momentum == 0:
            bad("nesterov", "Nesterov momentum needs momentum > 0")
        if not is_number(self.weight_decay) or self.weight_decay < 0:
            bad("weight_decay", "must be a number >= 0")
        if self.schedule not in SCHEDULES:
            bad("schedule", f"unknown schedule; choose one of {', '.join(SCHEDULES)}")
        if not is_number(self.warmup) or not 0 < self.warmup < 1:
            bad("warmup", "must lie in (0, 1)")
        if not is_number(self.label_smoothing) or not 0 <= self.label_smoothing < 1:
            bad("label_smoothing", "must lie in [0, 1)")
        if not is_int(self.seed) or self.seed < 0:
            bad("seed", "must be an integer >= 0")
        for name, most in (("train_per_class", 5000), ("test_per_class", 1000)):
            value = getattr(self, name)
            if value is not None and (not is_int(value) or not 1 <= value <= most):
                bad(name, f"must be None (all images) or an integer in 1..{most}")
        if self.batch_size > self.train_size:
            bad(
                "batch_size",
                f"larger than the training set ({self.train_size} images, train_per_class={self.train_per_class});"
                " the last partial batch is dropped, so no step would run. Lower batch_size or raise"
                " train_per_class",
            )
        if not isinstance(self.device, str):
            bad("device", 'must be a string such as "auto", "cpu", "cuda"')
        if self.device not in ("", "auto"):
            try:
                torch.device(self.device)
            except RuntimeError:
                bad("device", 'not a device name; use "auto", "cpu", "cuda", "cuda:N" or "mps"')
        if not isinstance(self.amp, bool):
            bad("amp", "must be True or False")
        if self.channels_last is not None and not isinstance(self.channels_last, bool):
            bad("channels_last", "must be None (automatic), True or False")
        if self.workers is not None and (not is_int(self.workers) or self.workers < 0):
            bad("workers", "must be None (automatic) or an integer >= 0")
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            bad("data_dir", "must be None or a path string")
        return self


PROFILES: dict[str, dict[str, Any]] = {
    # The course's reference recipe, exactly as the seed notebook ran it.
    "seed": dict(
        epochs=50, batch_size=128, lr=0.01, momentum=0.9, nesterov=False, weight_decay=0.0,
        schedule="constant", label_smoothing=0.0,
    ),
    # See profile() for the reasoning behind each number.
    "fast": dict(
        epochs=30, batch_size=512, lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4,
        schedule="onecycle", warmup=0.25, label_smoothing=0.1,
    ),
    # The seed recipe's optimizer for one epoch on 500 training and 250 test images: about a minute on 2 CPU cores.
    "smoke": dict(
        epochs=1, batch_size=50, lr=0.01, momentum=0.9, nesterov=False, weight_decay=0.0,
        schedule="constant", label_smoothing=0.0, train_per_class=50, test_per_class=25,
    ),
}
"""Named recipes (field overrides of :class:`TrainConfig`)."""


def profile(name: str | None = None, **overrides: Any) -> TrainConfig:
    """A validated TrainConfig for a named recipe, with ``overrides`` applied.

    ``name=None`` takes ``$EVA9_PROFILE``, else ``"seed"``. ``$EVA9_EPOCHS`` replaces the profile's epochs (so CI can
    shorten any run); an explicit ``epochs=`` override wins over it.

    - ``seed``: the reference recipe — 50 epochs, batch 128, SGD lr 0.01 momentum 0.9, constant lr, plain
      cross-entropy, no weight decay. It reached 88.7% in the seed notebook; in this package, with eva9's
      augmentation, 88.24% (87% first at epoch 30) on an H100 (``results/seed.json``).
    - ``fast``: a modern short-schedule recipe for the CIFAR ResNet18, aiming at >= 93% in 30 epochs and >= 87% in 8:
      one-cycle lr (Smith & Topin 2017, "Super-convergence") warming up linearly-cosine to 0.2 over the first 25%
      of steps and annealing to ~0, which reaches in tens of epochs what a constant lr needs hundreds for;
      batch 512 to keep a GPU busy, with the peak lr scaled from the usual 0.1 at batch 128 (Goyal et al. 2017)
      but kept below the linear-scaling 0.4, which one-cycle's warm-up tolerates yet ResNet18 without a warm
      restart does not need; Nesterov SGD momentum 0.9 and weight decay 5e-4, the CIFAR ResNet standard
      (He et al. 2016; kuangliu/pytorch-cifar reaches 95% with them); label smoothing 0.1 (Szegedy et al. 2016;
      Müller et al. 2019), which regularizes the over-confident final epochs of a short schedule. The same
      ingredients (one-cycle, Nesterov, wd 5e-4, batch 512, label smoothing) are what David Page's DAWNBench
      ResNet-9 used to reach 94% in 24 epochs. Measured on an H100 (``results/fast.json``), it misses both aims:
      90.63% after 30 epochs (91.07% with flip test-time augmentation), 87% first at epoch 23. Two first tuning trials (``benchmarks/README.md``) did not beat it.
    - ``smoke``: one epoch on 50 training and 25 test images per class (500 / 250) at batch 50 with the seed's
      optimizer: a plumbing check that finishes in about a minute on a 2-core CPU, not a result.
    """
    if name is None:
        name = os.environ.get(ENV_PROFILE, "").strip() or DEFAULT_PROFILE
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    fields = {"profile": name, **PROFILES[name]}
    env_epochs = os.environ.get(ENV_EPOCHS, "").strip()
    if env_epochs:
        try:
            fields["epochs"] = int(env_epochs)
        except ValueError:
            raise ValueError(f"{ENV_EPOCHS}={env_epochs!r} is not an integer number of epochs") from None
    fields.update(overrides)
    return TrainConfig.from_dict(fields).validate()


def build_model(name: str = "resnet18") -> nn.Module:
    """A fresh model by name (``TrainConfig.model``)."""
    from . import models

    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(_MODELS)}")
    return getattr(models, name)()


# ------------------------------------------------------------------------------------------------------ history


@dataclass
class History:
    """Per-epoch records: epoch (1-based), train_loss, train_acc, test_loss, test_acc (fractions), lr, seconds.

    ``seconds`` is the epoch's wall time, training and evaluation together; runs written by :func:`fit` also hold
    ``train_images_per_s`` and ``eval_images_per_s``, the rates of the two parts.

    ``train_loss`` is the training criterion's (label-smoothed where the config asks for it), averaged over the
    epoch's steps while the weights change; ``test_loss`` is plain cross-entropy after the epoch; ``lr`` is the
    learning rate of the epoch's first step.
    """

    epochs: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """``{"epochs": [...]}``, the layout of ``history.json``."""
        return {"epochs": [dict(e) for e in self.epochs]}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        """The inverse of :meth:`to_dict`."""
        if not isinstance(d, dict) or not isinstance(d.get("epochs"), list):
            raise ValueError('a history must be a dict {"epochs": [...]}')
        return cls([dict(e) for e in d["epochs"]])

    @classmethod
    def load(cls, path: str | os.PathLike) -> "History":
        """Read a ``history.json`` file (or the ``history.json`` inside a run folder)."""
        return cls.from_dict(_read_run_json(path, "history.json", "train with out=... to write one"))

    def save(self, path: str | os.PathLike) -> None:
        """Write ``history.json`` atomically."""
        _write_text_atomic(Path(path), json.dumps(self.to_dict(), indent=2))

    def __len__(self) -> int:
        return len(self.epochs)

    def column(self, key: str) -> list:
        """One value per epoch, e.g. ``history.column("test_acc")``."""
        return [e[key] for e in self.epochs]


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temp file in the same folder, fsync, then rename: a kill leaves the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------------- evaluation


class Predictions(NamedTuple):
    """The model's output over a whole loader: logits [N, C] (CPU float), predicted and true labels [N] (long)."""

    logits: torch.Tensor
    preds: torch.Tensor
    labels: torch.Tensor


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _autocast(device: torch.device, amp_dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)


def _is_channels_last(model: nn.Module) -> bool:
    """Whether the model's first 4-D weight (its stem convolution) is stored channels-last."""
    for tensor in model.parameters():
        if tensor.dim() == 4:
            return tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous()
    return False


def _to_device(images: torch.Tensor, labels: torch.Tensor, device: torch.device, channels_last: bool = False):
    """Move a batch to ``device``; images channels-last when the model is (so no layer converts them)."""
    non_blocking = device.type == "cuda"
    if channels_last and images.dim() == 4:
        images = images.to(device, non_blocking=non_blocking, memory_format=torch.channels_last)
    else:
        images = images.to(device, non_blocking=non_blocking)
    return images, labels.to(device, non_blocking=non_blocking)


@torch.no_grad()
def predict(model: nn.Module, loader, *, amp_dtype: torch.dtype | None = None, tta: bool = False) -> Predictions:
    """Logits, predictions and labels for every sample of ``loader``, in loader order, on the CPU.

    The model runs in eval mode on its own device; its previous train/eval mode is restored afterwards.
    ``tta=True`` adds flip test-time augmentation: the logits are the mean of the image's and its mirror image's.
    """
    device = _model_device(model)
    channels_last = _is_channels_last(model)
    was_training = model.training
    model.eval()
    logits_all, labels_all = [], []
    try:
        for images, labels in loader:
            images, _ = _to_device(images, labels, device, channels_last)
            with _autocast(device, amp_dtype):
                logits = model(images)
                if tta:
                    logits = (logits.float() + model(images.flip(-1)).float()) / 2
            logits_all.append(logits.float().cpu())
            labels_all.append(torch.as_tensor(labels).long().cpu())
    finally:
        model.train(was_training)
    if not logits_all:
        raise ValueError("predict() got an empty loader")
    logits = torch.cat(logits_all)
    return Predictions(logits, logits.argmax(1), torch.cat(labels_all))


def evaluate(
    model: nn.Module,
    loader,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    *,
    amp_dtype: torch.dtype | None = None,
    tta: bool = False,
) -> tuple[float, float]:
    """Mean loss (cross-entropy unless ``criterion``, a mean-reducing loss, is given) and accuracy in [0, 1].

    ``tta=True`` scores the mean logits of each image and its mirror image (see :func:`predict`).
    """
    out = predict(model, loader, amp_dtype=amp_dtype, tta=tta)
    return _loss_and_accuracy(out, criterion)


def _loss_and_accuracy(out: Predictions, criterion=None) -> tuple[float, float]:
    criterion = criterion if criterion is not None else F.cross_entropy
    with torch.no_grad():
        loss = float(criterion(out.logits, out.labels))
    return loss, float((out.preds == out.labels).double().mean())


# -------------------------------------------------------------------------------------------------------- epoch


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    try:
        return shell is not None and shell.get_ipython() is not None and "IPKernelApp" in shell.get_ipython().config
    except Exception:  # noqa: BLE001 - any IPython oddity just means "not a notebook"
        return False


def _want_progress(progress: bool | None) -> bool:
    """None = automatic: bars on a terminal or in a notebook, none in logs and pipes."""
    if progress is not None:
        return bool(progress)
    return _in_notebook() or (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())


def train_one_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    device: torch.device | str,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: Any | None = None,
    amp_dtype: torch.dtype | None = None,
    progress: bool | None = False,
    *,
    epoch: int | None = None,
    refresh_every: int = 25,
    sync_every_step: bool | None = None,
) -> tuple[float, float]:
    """Train for one pass over ``loader``; return the mean training loss and accuracy over its samples.

    ``scheduler`` steps after every batch (one-cycle and cosine are per-step schedules). Loss and correct counts are
    summed on the device, so on a GPU the loop synchronises only every ``refresh_every`` steps (to update the
    progress bar and check the loss) and at the end (an fp16 GradScaler still reads its overflow flag every step);
    off CUDA, where reading a value is cheap, every step. A NaN or infinite loss raises
    :class:`NonFiniteLossError` naming the epoch and the first bad step (off CUDA at once, before the bad step
    updates the weights).
    ``sync_every_step`` overrides that choice (None = only off CUDA).
    """
    device = torch.device(device)
    channels_last = _is_channels_last(model)
    # .item() is free on the CPU, so stop before any bad update; on a GPU it would stall the queue every step.
    check_every_step = device.type != "cuda" if sync_every_step is None else sync_every_step
    model.train()
    # The loss is summed in float64, which MPS lacks: sum it on the CPU there (off CUDA the loop syncs every step).
    sum_device = torch.device("cpu") if device.type == "mps" else device
    loss_sum = torch.zeros((), dtype=torch.float64, device=sum_device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    first_bad = torch.full((), -1, dtype=torch.int64, device=device)
    seen = 0
    total = len(loader)
    where = f"epoch {epoch}, " if epoch is not None else ""

    def fail(step: int, value: float | str) -> None:
        lr = optimizer.param_groups[0]["lr"]
        raise NonFiniteLossError(
            f"training loss became {value} at {where}step {step} of {total} (lr {lr:.3g}); stopped. "
            "Lower the learning rate or check the inputs; the last good checkpoint is untouched",
            epoch=epoch,
            step=step,
        )

    def check() -> None:
        bad_step = int(first_bad)
        if bad_step >= 0:
            fail(bad_step, "NaN or infinite")  # the device kept only where, not which

    bar = None
    if progress:
        from tqdm import tqdm

        desc = f"epoch {epoch}" if epoch is not None else "train"
        bar = tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True, file=sys.stderr)
    try:
        for step, (images, labels) in enumerate(loader, start=1):
            # The training step begins here (the book's training chapter shows it).
            images, labels = _to_device(images, labels, device, channels_last)
            with _autocast(device, amp_dtype):  # bf16/fp16 on a GPU with amp, else float32
                logits = model(images)  # forward: ten scores (logits) per image
                loss = criterion(logits, labels)  # cross-entropy, the mean over the batch
            if check_every_step:  # stop before a NaN reaches the weights
                value = loss.item()
                if not math.isfinite(value):
                    fail(step, value)
            else:  # on a GPU: remember the first bad step without waiting for it
                finite = torch.isfinite(loss.detach())
                first_bad = torch.where((first_bad < 0) & ~finite, step, first_bad)
            optimizer.zero_grad(set_to_none=True)  # forget the last batch's gradients
            if scaler is not None:  # fp16: scale the loss so that small gradients survive
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()  # backward: d(loss)/d(weight) for every weight
                optimizer.step()  # SGD: a small step against the gradient
            if scheduler is not None:
                scheduler.step()  # the learning rate for the next step
            # The training step ends here.
            n = labels.size(0)
            loss_sum += loss.detach().to(sum_device).double() * n
            correct += (logits.detach().argmax(1) == labels).sum()
            seen += n
            if check_every_step or step % refresh_every == 0 or step == total:
                if not check_every_step:
                    check()
                if bar is not None:
                    bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{correct.item() / seen:.2%}",
                                    refresh=False)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if seen == 0:
        raise ValueError("the training loader yielded no batch; is batch_size larger than the dataset?")
    if not check_every_step:
        check()
    return loss_sum.item() / seen, correct.item() / seen


# ---------------------------------------------------------------------------------------------------------- fit


class Run(NamedTuple):
    """A finished (or interrupted) run read back from its folder: model (CPU, eval mode), config, history."""

    model: nn.Module
    config: TrainConfig
    history: History


def _amp_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    if not amp or device.type != "cuda":
        return None
    # bf16 where the tensor cores run it (compute capability 8+: A100, L4, H100). torch.cuda.is_bf16_supported() also
    # says yes where bf16 is only emulated (a T4, Colab's usual GPU), which is slower than fp16 with a GradScaler.
    return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16


def _grad_scaler(amp_dtype: torch.dtype | None):
    if amp_dtype != torch.float16:
        return None
    try:
        return torch.amp.GradScaler("cuda")
    except (AttributeError, TypeError):  # torch < 2.3
        return torch.cuda.amp.GradScaler()


def _make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    total = config.epochs * steps_per_epoch
    if config.schedule == "onecycle":
        # OneCycleLR divides by zero when a phase is shorter than one step (tiny smoke runs): keep both phases > 1 step.
        # A single step has no cycle at all: it runs at the peak lr.
        if total == 1:
            return None
        warmup = min(max(config.warmup, 1.5 / total), 1 - 0.5 / total)
        # cycle_momentum=False: OneCycleLR would otherwise cycle momentum 0.85-0.95 and ignore config.momentum.
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total, pct_start=warmup,
            div_factor=25.0, final_div_factor=1e4, cycle_momentum=False,
        )
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    return None


def _wants_channels_last(config: TrainConfig, device: torch.device) -> bool:
    """``config.channels_last``, or automatically: on CUDA, and on the CPU as :data:`CHANNELS_LAST_ON_CPU` says."""
    if config.channels_last is not None:
        return config.channels_last
    return device.type == "cuda" or (device.type == "cpu" and CHANNELS_LAST_ON_CPU)


class _TrainingParts(NamedTuple):
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    amp_dtype: torch.dtype | None
    scaler: Any


def _training_parts(
    model: nn.Module, config: TrainConfig, device: torch.device, steps_per_epoch: int
) -> _TrainingParts:
    """Move ``model`` to ``device`` (channels-last where :func:`_wants_channels_last`) and build what :func:`fit`
    trains it with."""
    model.to(device)
    if _wants_channels_last(config, device):
        model.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
        weight_decay=config.weight_decay,
    )
    amp_dtype = _amp_dtype(device, config.amp)
    return _TrainingParts(criterion, optimizer, _make_scheduler(config, optimizer, steps_per_epoch), amp_dtype,
                          _grad_scaler(amp_dtype))


def _rng_states(train_loader) -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loader": None,
    }
    generator = getattr(train_loader, "generator", None)
    if generator is not None:
        states["loader"] = generator.get_state()
    return states


def _set_rng_states(states: dict[str, Any], train_loader) -> None:
    random.setstate(states["python"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
    generator = getattr(train_loader, "generator", None)
    if generator is not None and states["loader"] is not None:
        generator.set_state(states["loader"])


def _load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable checkpoint gets the same clear message
        raise ValueError(f"cannot read checkpoint {path}: {error}. Delete the run folder to start over") from None


def _check_resumable(saved: TrainConfig, config: TrainConfig, completed: int, out: Path) -> None:
    """Refuse to resume with a config that would compute something else than the interrupted run."""
    old, new = saved.to_dict(), config.to_dict()
    changed = [k for k in old if old[k] != new[k] and k not in TrainConfig.RESUMABLE and k != "epochs"]
    if changed:
        details = ", ".join(f"{k}: {old[k]!r} -> {new[k]!r}" for k in changed)
        raise ValueError(
            f"cannot resume {out} with a different config ({details}); only {', '.join(TrainConfig.RESUMABLE)}"
            " and, for a constant schedule, epochs may change. Use another out folder for a new run"
        )
    if old["epochs"] != new["epochs"]:
        if config.schedule != "constant":
            raise ValueError(
                f"cannot resume {out} with epochs {old['epochs']} -> {new['epochs']}: the {config.schedule} schedule"
                " depends on the total number of epochs. Use another out folder for a longer run"
            )
        if new["epochs"] < completed:
            raise ValueError(f"cannot resume {out} with epochs={new['epochs']}: {completed} epochs are already done")


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from .results import machine

    return f"{device.type} ({machine()['cpu']})"


def _write_metrics(
    out: Path, preds: Predictions, history: History, device: torch.device, wall_seconds: float
) -> dict[str, Any]:
    from .analysis import SHORT_NAMES, class_accuracy, confusion_matrix
    from .results import versions

    test_loss, test_acc = _loss_and_accuracy(preds)
    per_class = class_accuracy(preds.preds, preds.labels)
    metrics = {
        "test_acc": test_acc,
        "test_loss": test_loss,
        "train_acc": history.epochs[-1]["train_acc"],
        "train_loss": history.epochs[-1]["train_loss"],
        "epochs": len(history),
        "test_images": int(preds.labels.numel()),
        "class_accuracy": {n: (None if math.isnan(a) else float(a)) for n, a in zip(SHORT_NAMES, per_class)},
        "confusion_matrix": confusion_matrix(preds.preds, preds.labels).tolist(),
        "wall_seconds": wall_seconds,
        "device": _device_name(device),
        "versions": versions(),
    }
    _write_text_atomic(out / "metrics.json", json.dumps(metrics, indent=2))
    return metrics


def _images_per_epoch(loader) -> int:
    """Images one pass over ``loader`` yields: a DataLoader's sampler length (less a dropped partial batch)."""
    sampler, batch_size = getattr(loader, "sampler", None), getattr(loader, "batch_size", None)
    if sampler is not None and batch_size:
        images = len(sampler)
        return images - images % batch_size if loader.drop_last else images
    return sum(len(labels) for _, labels in loader)  # a list of (images, labels) batches


def _summary_line(record: dict, epochs: int) -> str:
    return (
        f"epoch {record['epoch']:>3}/{epochs}  train loss {record['train_loss']:.4f} acc {record['train_acc']:6.2%}"
        f"  test loss {record['test_loss']:.4f} acc {record['test_acc']:6.2%}  lr {record['lr']:.4g}"
        f"  {record['seconds']:.1f}s"
        + (f" ({record['train_images_per_s']:,.0f} img/s train, {record['eval_images_per_s']:,.0f} eval)"
           if "train_images_per_s" in record else "")
    )


def fit(
    model: nn.Module | None,
    config: TrainConfig | None = None,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    *,
    progress: bool | None = None,
    quiet: bool = False,
    train_loader=None,
    test_loader=None,
) -> History:
    """Train ``model`` with ``config``, evaluating after every epoch; return the History.

    ``model=None`` builds ``config.model`` after seeding (so the seed fixes the initial weights too).
    ``config=None`` takes :func:`profile` (or, when resuming, the run folder's own config.json).
    ``out`` is the run folder (see the module docstring); ``resume=True`` continues from its last completed epoch
    with the saved model, optimizer, scheduler, scaler and RNG states, returns a finished run (a folder holding
    ``model.pt`` and ``metrics.json``) as it is, checkpoint or not, and starts a new run where ``out`` holds none
    yet (so re-running the same call after an interruption always continues). Without ``resume``, a folder that
    holds a run is refused. Resuming with a config that computes something else is an error;
    ``TrainConfig.RESUMABLE`` fields may change, and ``epochs`` may grow when the schedule is constant (which needs
    the checkpoint; the finished run's model.pt and metrics.json are removed before the first new epoch).
    The loaders' :class:`~eva9.data.EpochSampler` is set to each epoch, so the same seed gives the same batches
    whatever the workers and interruptions. The recorded test metrics are computed in float32, without autocast.
    ``progress``: tqdm bar per epoch (None = on a terminal or in a notebook); ``quiet`` silences bars and the
    per-epoch summary lines. ``train_loader``/``test_loader`` replace the CIFAR-10 loaders the config describes
    (then its data fields are not used).
    """
    out = Path(out) if out is not None else None
    checkpoint: dict[str, Any] | None = None
    if resume and out is None:
        raise ValueError("resume=True needs out=, the run folder to continue")
    finished = out is not None and _is_finished(out)
    if resume and (out / "config.json").is_file():
        saved = TrainConfig.load(out)
        config = config if config is not None else saved
        config.validate()
        if (out / "checkpoint.pt").is_file():
            checkpoint = _load_checkpoint(out / "checkpoint.pt")
        completed = _finished_epochs(out) if finished else checkpoint["epoch"] if checkpoint is not None else 0
        _check_resumable(saved, config, completed, out)
        if finished and completed >= config.epochs:
            if not quiet:
                print(f"{out} already holds a finished run of {completed} epochs; nothing to do")
            return History.load(out)
        if finished and checkpoint is None:
            raise ValueError(
                f"{out} holds a finished run of {completed} epochs whose checkpoint.pt was dropped, so it cannot"
                f" grow to {config.epochs} epochs. Train the longer run in another out folder"
            )
    else:
        config = (config if config is not None else profile()).validate()
        if out is not None and (finished or (out / "checkpoint.pt").exists()):
            if resume:
                raise ValueError(f"{out} holds a run but no config.json; delete the folder to start over")
            raise ValueError(f"{out} already holds a run; pass resume=True to continue it, or choose another out")
    show_bar = _want_progress(progress) and not quiet

    device = pick_device(config.device)
    seed_everything(config.seed)
    if model is None:
        model = build_model(config.model)
    if train_loader is None or test_loader is None:
        from .data import loaders

        default_train, default_test = loaders(
            config.data_dir, batch_size=config.batch_size, workers=config.workers,
            train_per_class=config.train_per_class, test_per_class=config.test_per_class,
            seed=config.seed, device=device,
        )
        train_loader = train_loader if train_loader is not None else default_train
        test_loader = test_loader if test_loader is not None else default_test

    criterion, optimizer, scheduler, amp_dtype, scaler = _training_parts(model, config, device, len(train_loader))

    history = History()
    start_epoch = 1
    train_seconds = 0.0
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(checkpoint["scheduler"])
        if scaler is not None and checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
        _set_rng_states(checkpoint["rng"], train_loader)
        history = History.from_dict(checkpoint["history"])
        start_epoch = checkpoint["epoch"] + 1
        train_seconds = float(checkpoint.get("train_seconds", 0.0))
        if not quiet:
            print(f"resuming {out} after epoch {checkpoint['epoch']}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if start_epoch <= config.epochs:  # training will change the state: final files of an older one must go
            _remove_final_files(out)
        _write_text_atomic(out / "config.json", json.dumps(config.to_dict(), indent=2))
        if checkpoint is None:
            history.save(out / "history.json")

    sampler = getattr(train_loader, "sampler", None)
    last_preds: Predictions | None = None
    for epoch in range(start_epoch, config.epochs + 1):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch - 1)  # the epoch's order and augmentation, whatever happened before
        started = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        train_loss, train_acc = train_one_epoch(
            model, train_loader, optimizer, criterion, device, scheduler, scaler, amp_dtype,
            progress=show_bar, epoch=epoch,
        )
        trained = time.perf_counter()  # train_one_epoch ends by reading its sums, so the device has finished
        last_preds = predict(model, test_loader)  # float32: the accuracy `eva9 evaluate` and the book will find
        test_loss, test_acc = _loss_and_accuracy(last_preds)
        finished = time.perf_counter()
        seconds = finished - started
        train_seconds += seconds
        record = dict(epoch=epoch, train_loss=train_loss, train_acc=train_acc, test_loss=test_loss,
                      test_acc=test_acc, lr=lr, seconds=seconds,
                      train_images_per_s=_images_per_epoch(train_loader) / (trained - started),
                      eval_images_per_s=last_preds.labels.numel() / (finished - trained))
        history.epochs.append(record)
        if out is not None:
            _save_atomic(
                {
                    "epoch": epoch,
                    "config": config.to_dict(),
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "rng": _rng_states(train_loader),
                    "history": history.to_dict(),
                    "train_seconds": train_seconds,
                },
                out / "checkpoint.pt",
            )
            history.save(out / "history.json")
        if not quiet:
            print(_summary_line(record, config.epochs), flush=True)

    if out is not None:
        if last_preds is None:  # training had finished before; only the final files were missing
            last_preds = predict(model, test_loader)
        _save_atomic(model.state_dict(), out / "model.pt")
        _write_metrics(out, last_preds, history, device, train_seconds)  # last: it marks the run finished
    return history


def _is_finished(out: Path) -> bool:
    """A run folder holding model.pt and metrics.json (fit writes metrics.json last, and removes it first)."""
    return (out / "model.pt").is_file() and (out / "metrics.json").is_file()


def _finished_epochs(out: Path) -> int:
    try:
        return int(json.loads((out / "metrics.json").read_text(encoding="utf-8"))["epochs"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"cannot read {out / 'metrics.json'}: {error!r}. Delete the run folder to start over") from None


def _remove_final_files(out: Path) -> None:
    """Remove metrics.json, then model.pt: a kill in between leaves no finished-looking run of an older state."""
    for name in ("metrics.json", "model.pt"):
        (out / name).unlink(missing_ok=True)


def prune(out: str | os.PathLike) -> int:
    """Delete the checkpoint.pt of a finished run, keeping model.pt, metrics.json, history and config; return the
    bytes freed (0 if there was none).

    A pruned run still loads (:func:`load_run`), evaluates and resumes as finished, but can no longer be extended
    to more epochs. Also ``eva9 train --out DIR --resume --keep-weights-only``.
    """
    out = Path(out)
    if not _is_finished(out):
        raise ValueError(
            f"{out} holds no finished run (model.pt and metrics.json); only a finished run's checkpoint may be"
            " dropped. Finish it with resume=True (or `eva9 train --out DIR --resume`) first"
        )
    checkpoint = out / "checkpoint.pt"
    if not checkpoint.is_file():
        return 0
    size = checkpoint.stat().st_size
    checkpoint.unlink()
    return size


def load_run(out: str | os.PathLike) -> Run:
    """The model (final weights of a finished run, else the last checkpoint's), config and history of a run."""
    out = Path(out)
    if not out.is_dir():
        raise FileNotFoundError(f"no run folder at {out}; train one with `python -m eva9 train --out {out}`")
    config = TrainConfig.load(out)
    if _is_finished(out):
        try:
            state = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unreadable weights file gets the same clear message
            raise ValueError(f"cannot read {out / 'model.pt'}: {error}. Retrain the run") from None
        history = History.load(out)
    elif (out / "checkpoint.pt").is_file():
        checkpoint = _load_checkpoint(out / "checkpoint.pt")
        state, history = checkpoint["model"], History.from_dict(checkpoint["history"])
    else:
        raise FileNotFoundError(f"{out} holds no model.pt or checkpoint.pt: the run has not finished an epoch yet")
    model = build_model(config.model)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"the weights in {out} do not fit a {config.model}: {error}") from None
    model.eval()
    return Run(model, config, history)
