"""Where a training epoch's time goes: the input pipeline alone, the model alone, the real loop, and evaluation.

    python benchmarks/bench_epoch.py [--profile seed --profile fast] [--workers N] [--data-dir D] [--out DIR]

Meant for a GPU (see benchmarks/README.md, "Where an epoch's time goes"). For each profile, with the loaders,
model, optimizer and mixed precision that ``eva9.train.fit`` would use, it times one full epoch of:

- **input pipeline**: the training loader alone (decoded images → Albumentations → batches in pinned memory →
  copied to the device), no model;
- **model**: ``train_one_epoch`` over the same number of steps, cycling through a few batches already on the
  device, so no loading at all (no scheduler: the learning rate does not change the speed);
- **real loop**: ``train_one_epoch`` over the real loader, the work of one ``fit`` epoch;
- **evaluation**: ``predict`` over the test loader, as ``fit`` runs it after every epoch.

Each is warmed up first (worker start-up, cuDNN's algorithm search). The slower of the first two bounds the third.
"""

from __future__ import annotations

import argparse
import sys
import time
from itertools import islice
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from eva9.train import build_model, predict, profile, train_one_epoch  # noqa: E402
from eva9.train.loop import _to_device  # noqa: E402
from eva9.train.parts import _loaders, _training_parts  # noqa: E402
from eva9.train.runs import _images_per_epoch  # noqa: E402
from eva9.utils import pick_device, seed_everything  # noqa: E402

FULL: dict[str, Any] = {
    "profiles": ["seed", "fast"],
    "train_per_class": None,
    "test_per_class": None,
    "model_batches": 8,
}
TINY: dict[str, Any] = {
    "profiles": ["smoke"],
    "train_per_class": 4,
    "test_per_class": 2,
    "batch_size": 10,
    "workers": 0,
    "model_batches": 2,
}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, work) -> float:
    """Wall seconds of ``work()``, with the device's queue drained before and after."""
    _synchronize(device)
    start = time.perf_counter()
    work()
    _synchronize(device)
    return time.perf_counter() - start


def limiting_part(rates: dict[str, float], margin: float = 0.1) -> str:
    """Which of the input pipeline and the model bounds the real loop: the slower, unless they are within ``margin``."""
    pipeline, model = rates["input pipeline"], rates["model"]
    if abs(pipeline - model) <= margin * min(pipeline, model):
        return f"both (within {margin:.0%})"
    return "input pipeline" if pipeline < model else "model"


def measure_profile(name: str, settings: dict[str, Any], root: str | None) -> dict[str, Any]:
    """Images/s of the four parts of one epoch of profile ``name``."""
    overrides = {key: settings[key] for key in ("batch_size", "workers") if settings.get(key) is not None}
    config = profile(
        name,
        data_dir=root,
        train_per_class=settings["train_per_class"],
        test_per_class=settings["test_per_class"],
        **overrides,
    )
    device = pick_device(config.device)
    seed_everything(config.seed)
    train_loader, test_loader = _loaders(config, device)  # as fit builds them
    model = build_model(config.model)
    steps, train_images = len(train_loader), _images_per_epoch(train_loader)
    # fit's model placement, criterion, optimizer and precision; no scheduler: the lr does not change the speed
    criterion, optimizer, _, amp_dtype, scaler = _training_parts(model, config, device, steps)

    def pipeline_epoch() -> None:
        for images, labels in train_loader:
            _to_device(images, labels, device)

    fixed = [_to_device(images, labels, device) for images, labels in islice(train_loader, settings["model_batches"])]
    device_batches = [fixed[i % len(fixed)] for i in range(steps)]

    def train_on(batches):
        return lambda: train_one_epoch(model, batches, optimizer, criterion, device, None, scaler, amp_dtype)

    pipeline_epoch()  # warm-up: workers start, first batches fill
    train_on(device_batches[: min(steps, 20)])()  # warm-up: cuDNN picks its algorithms
    predict(model, test_loader, amp_dtype=amp_dtype)
    seconds = {
        "input pipeline": _timed(device, pipeline_epoch),
        "model": _timed(device, train_on(device_batches)),
        "real loop": _timed(device, train_on(train_loader)),
    }
    eval_seconds = _timed(device, lambda: predict(model, test_loader, amp_dtype=amp_dtype))
    rates = {part: train_images / s for part, s in seconds.items()}
    test_images = _images_per_epoch(test_loader)
    rates["evaluation"] = test_images / eval_seconds
    limit = limiting_part(rates)
    return {
        "profile": name,
        "batch_size": config.batch_size,
        "workers": train_loader.num_workers,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
        "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "float32",
        "train_images": train_images,
        "test_images": test_images,
        "steps": steps,
        "seconds": {**seconds, "evaluation": eval_seconds},
        "images_per_second": rates,
        "epoch_seconds": seconds["real loop"] + eval_seconds,
        "limited_by": limit,
    }


def run(settings: dict[str, Any], out: Path | None = common.RESULTS, root: str | None = None) -> dict:
    """Measure every profile in ``settings``, print a table, write ``out/epoch.json``."""
    profiles = [measure_profile(name, settings, root) for name in settings["profiles"]]
    parts = ("input pipeline", "model", "real loop", "evaluation")
    common.print_table(
        f"Where an epoch's time goes ({profiles[0]['device']}; images/s)",
        ["profile", "batch", "workers", *parts, "epoch s", "limited by"],
        [
            [
                p["profile"],
                p["batch_size"],
                p["workers"],
                *(p["images_per_second"][k] for k in parts),
                p["epoch_seconds"],
                p["limited_by"],
            ]
            for p in profiles
        ],
    )
    return common.record("epoch", settings, {"profiles": profiles}, out)


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="append", help="profile to measure (repeatable; default: seed and fast)")
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: the package's default)")
    parser.add_argument("--train-per-class", type=int, default=None, help="a stratified training subset (dry run)")
    parser.add_argument("--test-per-class", type=int, default=None, help="a stratified test subset (dry run)")
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 folder (default: $EVA9_DATA_DIR)")
    parser.add_argument("--out", type=Path, default=common.RESULTS, help="folder for epoch.json (default: %(default)s)")
    args = parser.parse_args(argv)
    settings = dict(
        FULL,
        profiles=args.profile or FULL["profiles"],
        workers=args.workers,
        train_per_class=args.train_per_class,
        test_per_class=args.test_per_class,
    )
    run(settings, args.out, args.data_dir)


if __name__ == "__main__":
    main()
