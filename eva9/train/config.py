"""What a training run is: :class:`TrainConfig`, the named recipes in :data:`PROFILES`, :func:`profile` (which
reads ``$EVA9_PROFILE`` and ``$EVA9_EPOCHS``) and :func:`build_model`."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

__all__ = [
    "SCHEDULES",
    "ENV_PROFILE",
    "ENV_EPOCHS",
    "TrainConfig",
    "PROFILES",
    "profile",
    "affordable_profile",
    "build_model",
]

SCHEDULES: tuple[str, ...] = ("constant", "onecycle", "cosine")
"""Learning-rate schedules: constant; one-cycle (warm up to ``lr``, anneal to ~0); cosine from ``lr`` to 0."""

AUGMENT_ON: tuple[str, ...] = ("workers", "device")
"""Where training images are augmented (``TrainConfig.augment_on``)."""

ENV_PROFILE = "EVA9_PROFILE"
"""Environment variable naming the profile that ``profile()`` (no name) returns."""

ENV_EPOCHS = "EVA9_EPOCHS"
"""Environment variable overriding every profile's number of epochs (an explicit ``epochs=`` still wins)."""

DEFAULT_PROFILE = "seed"

_MODELS = ("resnet18", "resnet34")


def _read_run_json(path: str | os.PathLike, filename: str, hint: str) -> Any:
    """The JSON in ``path``, or in ``path/filename`` when ``path`` is a run folder."""
    path = Path(path)
    if path.is_dir():
        path = path / filename
    if not path.is_file():
        raise FileNotFoundError(f"no {filename} at {path}: {hint}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"cannot read {path} ({error}); delete or re-create it") from None


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
    augment_on: str = "workers"
    """Where training images are augmented: "workers" (the Albumentations pipeline in loader processes) or
    "device" (the uint8 set on the training device, whole batches augmented there: eva9.data.device_batches)."""
    compile: bool = False
    """Compile the model with ``torch.compile`` (``nn.Module.compile``, so the weights keep their names)."""
    tensorboard: str | None = None
    """A folder for TensorBoard event files (one record per epoch); None = none. Needs ``eva9[tensorboard]``."""
    sync_batchnorm: bool = True
    """With several processes (torchrun): BatchNorm's training statistics over the whole global batch, as one process
    computes them (torch's ``SyncBatchNorm`` on GPUs, :class:`~eva9.train.distributed.GroupBatchNorm2d` on CPUs).
    False: each process normalises its own slice (``batch_size / world size`` images), which is faster but trains
    another network at each world size, and the running statistics saved are rank 0's. Alone: no effect."""

    # Fields that may differ when a run is resumed: they change where and how fast it runs, not what it computes.
    # ``epochs`` may also change (to extend a run) when the schedule is constant; see fit().
    RESUMABLE: ClassVar[tuple[str, ...]] = (
        "device",
        "workers",
        "data_dir",
        "amp",
        "channels_last",
        "compile",
        "tensorboard",
    )

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (the layout of ``config.json``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """The inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; known: {sorted(names)}")
        return cls(**d)

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainConfig:
        """Read ``config.json`` (or the one inside a run folder)."""
        return cls.from_dict(_read_run_json(path, "config.json", "is it a run folder written by fit(out=...)?"))

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (unknown names are an error)."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    @property
    def train_size(self) -> int:
        """Number of training images the config trains on."""
        return 50_000 if self.train_per_class is None else 10 * self.train_per_class

    def validate(self) -> TrainConfig:
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
        if self.augment_on not in AUGMENT_ON:
            bad("augment_on", f"choose one of {', '.join(AUGMENT_ON)}")
        if not isinstance(self.compile, bool):
            bad("compile", "must be True or False")
        if self.tensorboard is not None and not isinstance(self.tensorboard, str):
            bad("tensorboard", "must be None or a folder path string")
        if not isinstance(self.sync_batchnorm, bool):
            bad("sync_batchnorm", "must be True or False")
        return self


_SEED_RECIPE: dict[str, Any] = dict(
    epochs=50,
    batch_size=128,
    lr=0.01,
    momentum=0.9,
    nesterov=False,
    weight_decay=0.0,
    schedule="constant",
    label_smoothing=0.0,
)
"""The course's reference recipe, exactly as the seed notebook ran it."""

_FAST_RECIPE: dict[str, Any] = dict(
    epochs=30,
    batch_size=512,
    lr=0.2,
    momentum=0.9,
    nesterov=True,
    weight_decay=5e-4,
    schedule="onecycle",
    warmup=0.25,
    label_smoothing=0.1,
)
"""A modern short-schedule recipe (see profile() for the reasoning behind each number)."""

PROFILES: dict[str, dict[str, Any]] = {
    "seed": dict(_SEED_RECIPE),
    "fast": dict(_FAST_RECIPE),
    # The fast recipe for a few epochs on a stratified subset: a run a CPU trains live in about 3 minutes.
    "cpu": dict(_FAST_RECIPE, epochs=4, batch_size=64, lr=0.025, train_per_class=200, test_per_class=100),
    # The seed recipe's optimizer for one epoch on 500 training and 250 test images: about a minute on 2 CPU cores.
    "smoke": dict(_SEED_RECIPE, epochs=1, batch_size=50, train_per_class=50, test_per_class=25),
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
      90.63% after 30 epochs (91.07% with flip test-time augmentation), 87% first at epoch 23. Two first tuning trials
      (``benchmarks/README.md``) did not beat it.
    - ``cpu``: the ``fast`` recipe (one-cycle with a 25% warm-up, Nesterov momentum 0.9, weight decay 5e-4, label
      smoothing 0.1) for 4 epochs on 200 training images per class (2,000), tested after each epoch on 100 per class
      (1,000): the run the book trains live without a GPU, a few minutes on a 2-core CPU, which shows a network
      learning (four points per curve, well above chance) rather than a result. Batches of 64 give 31 steps an
      epoch, and the peak lr is ``fast``'s 0.2 at batch 512 scaled linearly to the batch, 0.025: per image, the
      ``fast`` recipe's own step. Seeds 0 and 1 ended at 41.0% and 43.7% with it on a 2-core CPU, against 37.2%
      and 36.8% at 0.05 (the usual 0.1 at batch 128, scaled) and 32.7% at 0.1 (``benchmarks/README.md``).
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


def affordable_profile(has_gpu: bool | None = None) -> tuple[str, str]:
    """The profile this machine affords, and why: ``$EVA9_PROFILE`` if set, else ``seed`` with a GPU (CUDA or
    MPS; ``has_gpu=None`` looks) and ``cpu`` without one; the book and ``eva9 train`` both choose so."""
    from ..utils import pick_device

    name = os.environ.get(ENV_PROFILE, "").strip()
    if name:
        return name, f"${ENV_PROFILE} names it"
    if has_gpu if has_gpu is not None else pick_device().type != "cpu":
        return "seed", "a GPU is here"
    return "cpu", "no GPU here: a few epochs on 2,000 images, far from a full run; pass --profile seed to train one"


def build_model(name: str = "resnet18") -> nn.Module:
    """A fresh model by name (``TrainConfig.model``)."""
    from .. import models

    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(_MODELS)}")
    return getattr(models, name)()
