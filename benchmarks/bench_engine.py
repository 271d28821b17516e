"""Engine overhead: images/s of eva9's training loop vs a bare PyTorch loop, same ResNet18, same fixed batches.

The batches are built once in memory, so the comparison isolates the engine (progress bar, metrics, device moves)
from data loading. The two loops alternate (AB, BA, ...) and the ratio is the median of the per-round ratios.
Goal: eva9 ≥ 0.95× the bare loop.

A second A/B times eva9's loop with the model (and so its batches) channels-last against the default contiguous
layout, at the batch size and torch threads ``fit`` uses on the CPU (``channels_last_*`` settings): what
``eva9.train.CHANNELS_LAST_ON_CPU`` follows.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from eva9.models import BasicBlock, ResNet  # noqa: E402
from eva9.train import train_one_epoch  # noqa: E402

NAME = "engine"
# Short rounds (one batch per "epoch") and many of them: each AB pair runs close together in time, so the median
# of the pair ratios resists the load of other jobs on a shared machine. ``threads=1``: with two torch threads on
# a 2-core machine that other jobs also use, the threads wait on each other whenever a job holds a core, and the
# timings scatter by 2× (measured), far more than the effect sought; None keeps torch's default.
FULL = {
    "batch_size": 32,
    "batches": 1,
    "repeats": 12,
    "blocks": [2, 2, 2, 2],
    "size": 32,
    "threads": 1,
    "channels_last_batch_size": 128,
    "channels_last_repeats": 8,
    "channels_last_threads": None,
}
QUICK = {
    "batch_size": 16,
    "batches": 1,
    "repeats": 6,
    "blocks": [2, 2, 2, 2],
    "size": 32,
    "threads": 1,
    "channels_last_batch_size": 128,
    "channels_last_repeats": 4,
    "channels_last_threads": None,
}
TINY = {
    "batch_size": 4,
    "batches": 1,
    "repeats": 1,
    "blocks": [1, 1, 1, 1],
    "size": 16,
    "threads": None,
    "channels_last_batch_size": 4,
    "channels_last_repeats": 1,
    "channels_last_threads": None,
}
"""Settings: ``blocks`` per stage ([2, 2, 2, 2] is ResNet18) and image ``size`` let a test run a smaller model.
``channels_last_threads=None``: torch's default, as ``fit`` runs."""


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

    threads = torch.get_num_threads()
    if settings["threads"]:
        torch.set_num_threads(settings["threads"])
    cpu: dict[str, list[float]] = {}
    try:
        seconds = common.interleaved(
            {
                "bare": lambda: bare_epoch(model, batches, optimizer, criterion),
                "eva9": lambda: train_one_epoch(model, batches, optimizer, criterion, device, progress=False),
            },
            repeats=settings["repeats"],
            cpu_seconds=cpu,
        )
    finally:
        torch.set_num_threads(threads)
    images = batch_size * n_batches
    rate = {name: images / common.median(times) for name, times in seconds.items()}
    ratio = common.paired_ratio(seconds["bare"], seconds["eva9"])  # eva9 throughput / bare throughput
    cpu_ratio = common.paired_ratio(cpu["bare"], cpu["eva9"])
    common.print_table(
        f"Engine overhead: {_model_name(settings)} training on CPU ({settings['threads'] or threads} torch "
        f"thread(s)), {n_batches} batch(es) of {batch_size} per round, {settings['repeats']} interleaved rounds",
        ["loop", "median wall s", "median CPU s", "images/s"],
        [[name, common.median(times), common.median(cpu[name]), rate[name]] for name, times in seconds.items()],
    )
    print(f"eva9 / bare throughput: {ratio:.3f}× by wall time, {cpu_ratio:.3f}× by CPU time (goal ≥ 0.95×)")
    layouts = channels_last_ab(settings)
    return common.record(
        NAME,
        settings,
        {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "images_per_second": rate,
            "ratio_eva9_to_bare": ratio,
            "cpu_ratio_eva9_to_bare": cpu_ratio,
            "goal": ">= 0.95",
            "channels_last": layouts,
        },
        out,
    )


def channels_last_ab(settings: dict) -> dict:
    """Time one eva9 training step with a contiguous and a channels-last copy of the model, interleaved."""
    torch.manual_seed(0)
    batch_size, size = settings["channels_last_batch_size"], settings["size"]
    batches = [(torch.randn(batch_size, 3, size, size), torch.randint(0, 10, (batch_size,)))]
    criterion, device = nn.CrossEntropyLoss(), torch.device("cpu")
    contestants = {}
    for layout, memory_format in (("contiguous", torch.contiguous_format), ("channels-last", torch.channels_last)):
        model = ResNet(BasicBlock, settings["blocks"]).to(memory_format=memory_format)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        contestants[layout] = lambda m=model, o=optimizer: train_one_epoch(
            m, batches, o, criterion, device, progress=False
        )
    threads = torch.get_num_threads()
    if settings["channels_last_threads"]:
        torch.set_num_threads(settings["channels_last_threads"])
    try:
        used_threads = torch.get_num_threads()
        seconds = common.interleaved(contestants, repeats=settings["channels_last_repeats"])
    finally:
        torch.set_num_threads(threads)
    rate = {name: batch_size / common.median(times) for name, times in seconds.items()}
    ratio = common.paired_ratio(seconds["contiguous"], seconds["channels-last"])  # channels-last speed-up
    common.print_table(
        f"Memory layout: {_model_name(settings)}, one eva9 training step of {batch_size} on CPU ({used_threads} torch "
        f"thread(s)), {settings['channels_last_repeats']} interleaved rounds",
        ["layout", "median wall s", "images/s"],
        [[name, common.median(times), rate[name]] for name, times in seconds.items()],
    )
    print(f"channels-last / contiguous throughput: {ratio:.3f}×")
    return {
        "batch_size": batch_size,
        "threads": used_threads,
        "seconds": seconds,
        "images_per_second": rate,
        "ratio_channels_last_to_contiguous": ratio,
    }


if __name__ == "__main__":  # same options as run.py, for this benchmark alone
    import run

    run.main(["--only", NAME, *sys.argv[1:]])
