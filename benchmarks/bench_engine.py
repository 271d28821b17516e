"""Engine overhead: images/s of eva9's training loop vs a bare PyTorch loop, same ResNet18, same fixed batches.

The batches are built once in memory, so the comparison isolates the engine (progress bar, metrics, device moves)
from data loading. The two loops alternate (AB, BA, ...) and the ratio is the median of the per-round ratios.
Goal: eva9 ≥ 0.95× the bare loop.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from eva9.models import BasicBlock, ResNet  # noqa: E402
from eva9.train import train_one_epoch  # noqa: E402

NAME = "engine"
FULL = {"batch_size": 32, "batches": 2, "repeats": 5, "blocks": [2, 2, 2, 2], "size": 32}
QUICK = {"batch_size": 16, "batches": 2, "repeats": 3, "blocks": [2, 2, 2, 2], "size": 32}
TINY = {"batch_size": 4, "batches": 1, "repeats": 1, "blocks": [1, 1, 1, 1], "size": 16}  # for tests: it runs
"""Settings: ``blocks`` per stage ([2, 2, 2, 2] is ResNet18) and image ``size`` let a test run a smaller model."""


def bare_epoch(model: nn.Module, batches, optimizer, criterion) -> None:
    """The plainest PyTorch training loop: zero_grad, forward, cross-entropy, backward, step."""
    model.train()
    for images, labels in batches:
        optimizer.zero_grad()
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()


def _model_name(settings: dict) -> str:
    name = "ResNet18" if settings["blocks"] == [2, 2, 2, 2] else f"ResNet{settings['blocks']}"
    return f"{name} at {settings['size']}×{settings['size']}"


def run(settings: dict = FULL, out: Path | None = common.RESULTS) -> dict:
    """Time both loops; print a table; return (and write) the JSON record."""
    torch.manual_seed(0)
    batch_size, n_batches = settings["batch_size"], settings["batches"]
    size = settings["size"]
    batches = [(torch.randn(batch_size, 3, size, size), torch.randint(0, 10, (batch_size,))) for _ in range(n_batches)]
    model = ResNet(BasicBlock, settings["blocks"])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    device = torch.device("cpu")

    seconds = common.interleaved(
        {
            "bare": lambda: bare_epoch(model, batches, optimizer, criterion),
            "eva9": lambda: train_one_epoch(model, batches, optimizer, criterion, device, progress=False),
        },
        repeats=settings["repeats"],
    )
    images = batch_size * n_batches
    rate = {name: images / common.median(times) for name, times in seconds.items()}
    ratio = common.paired_ratio(seconds["bare"], seconds["eva9"])  # eva9 throughput / bare throughput
    common.print_table(
        f"Engine overhead: {_model_name(settings)} training on CPU, {n_batches} batches of {batch_size}, "
        f"{settings['repeats']} interleaved repeats",
        ["loop", "median s/epoch", "images/s"],
        [[name, common.median(times), rate[name]] for name, times in seconds.items()],
    )
    print(f"eva9 / bare throughput: {ratio:.3f}× (goal ≥ 0.95×)")
    return common.record(
        NAME,
        settings,
        {"seconds": seconds, "images_per_second": rate, "ratio_eva9_to_bare": ratio, "goal": ">= 0.95"},
        out,
    )


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python benchmarks/bench_engine.py [--quick] [--out DIR]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller batches and fewer repeats")
    parser.add_argument("--out", type=Path, default=common.RESULTS, help="folder for the JSON (default: %(default)s)")
    args = parser.parse_args(argv)
    run(QUICK if args.quick else FULL, args.out)


if __name__ == "__main__":
    main()
