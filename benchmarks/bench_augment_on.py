"""Learning with augmentation on the training device against the workers' Albumentations pipeline, on the CPU.

The same stratified CIFAR-10 subset, recipe, epochs, seeds and network, once with ``augment_on="workers"`` and once
with ``augment_on="device"``; runs interleaved (workers, device, device, workers, ...) so that the load of a shared
machine falls on both alike. It records each run's per-epoch training loss and final test accuracy, and the spread
between seeds, which is the noise a difference between the paths must be compared with. Needs ``EVA9_DATA_DIR``.

The network is a small CNN (:func:`small_cnn`, three conv-BN-ReLU-pool stages, about 50 times fewer
multiply-adds than ResNet18), not the course's ResNet18: on a shared 2-core CPU, ResNet18 trains at a few images
per second, so the ten minutes this comparison may take would not carry it past chance accuracy. Both paths feed
the same network the same way, so the comparison is of the augmentation paths, not of the network.
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from eva9.train import fit, profile  # noqa: E402

NAME = "augment_on"
FULL = {"train_per_class": 100, "test_per_class": 50, "epochs": 6, "batch_size": 50, "lr": 0.05, "seeds": [0, 1]}
QUICK = {**FULL, "seeds": [0]}
TINY = {"train_per_class": 2, "test_per_class": 1, "epochs": 1, "batch_size": 10, "lr": 0.05, "seeds": [0]}
PATHS = ("workers", "device")


def small_cnn(seed: int) -> nn.Module:
    """Three conv-BN-ReLU-max-pool stages (32, 64, 128 channels), global average pool, linear: seeded weights."""
    torch.manual_seed(seed)
    stages = []
    for channels_in, channels_out in ((3, 32), (32, 64), (64, 128)):
        stages += [nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False), nn.BatchNorm2d(channels_out)]
        stages += [nn.ReLU(inplace=True), nn.MaxPool2d(2)]
    return nn.Sequential(*stages, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))


def run(settings: dict = FULL, out: Path | None = common.RESULTS, root: str | None = None) -> dict:
    """Train each (seed, path) pair, interleaved; print and record the accuracies."""
    root = root if root is not None else os.environ.get("EVA9_DATA_DIR")
    runs: dict[str, dict[str, dict]] = {path: {} for path in PATHS}
    for k, seed in enumerate(settings["seeds"]):
        for path in PATHS if k % 2 == 0 else PATHS[::-1]:
            config = profile(
                "seed",
                epochs=settings["epochs"],
                batch_size=settings["batch_size"],
                lr=settings["lr"],
                train_per_class=settings["train_per_class"],
                test_per_class=settings["test_per_class"],
                seed=seed,
                device="cpu",
                workers=1,
                data_dir=root,
                augment_on=path,
            )
            history = fit(config, model=small_cnn(seed), quiet=True, progress=False).history
            runs[path][str(seed)] = {
                "test_acc": history.epochs[-1]["test_acc"],
                "train_loss": [e["train_loss"] for e in history.epochs],
                "train_images_per_s": [e["train_images_per_s"] for e in history.epochs],
            }
            print(f"seed {seed} {path:>7}: test acc {history.epochs[-1]['test_acc']:.2%}", flush=True)
    accuracy = {path: [r["test_acc"] for r in runs[path].values()] for path in PATHS}
    rows = []
    for path in PATHS:
        spread = statistics.stdev(accuracy[path]) if len(accuracy[path]) > 1 else float("nan")
        rows.append(
            [path, statistics.mean(accuracy[path]), spread, runs[path][str(settings["seeds"][0])]["train_loss"][-1]]
        )
    common.print_table(
        f"CPU, {10 * settings['train_per_class']} training / {10 * settings['test_per_class']} test images, "
        f"{settings['epochs']} epochs, seeds {settings['seeds']}",
        ["augment_on", "mean test accuracy", "std over seeds", "last train loss (first seed)"],
        rows,
    )
    settings = {**settings, "data_dir": root, "network": "small_cnn (benchmarks/bench_augment_on.py)"}
    return common.record(NAME, settings, {"runs": runs, "test_accuracy": accuracy}, out)


if __name__ == "__main__":  # same options as run.py, for this benchmark alone
    import run as runner

    runner.main(["--only", NAME, *sys.argv[1:]])
