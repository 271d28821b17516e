"""Trains the distributed tests' run: a tiny BatchNorm network on a fake CIFAR-10 folder, by :func:`eva9.train.fit`,
alone or under torchrun (the tests start it both ways). Not a test itself.

    python distributed_script.py DATA OUT [--epochs N] [--resume] [--slow SECONDS] [--audit REPORT]

``--slow`` sleeps in every training forward, so that a test can kill a rank mid-epoch; ``--audit`` writes to
``REPORT.<rank>`` every file operation of this process that touched OUT (Python's audit hooks).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import sys
import time

import torch
from torch import nn

from eva9.train import fit, profile


def tiny_batchnorm_network() -> nn.Module:
    """Two convolutions with BatchNorm (which the processes must synchronise), pooled into ten logits."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


def audit_into(report: str, out: str) -> None:
    """Record every audited file operation whose arguments name a path inside ``out``; write them at exit."""
    inside, touched = os.path.realpath(out), []

    def hook(event: str, args: tuple) -> None:
        for arg in args:
            if isinstance(arg, (str, os.PathLike)) and "\0" not in str(arg):  # paths, not compiled sources
                path = os.path.realpath(arg)
                if path == inside or path.startswith(inside + os.sep):
                    touched.append([event, path])

    sys.addaudithook(hook)
    rank = os.environ.get("RANK", "0")
    atexit.register(lambda: open(f"{report}.{rank}", "w").write(json.dumps(touched)))  # noqa: SIM115


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("out")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--slow", type=float, default=0.0)
    parser.add_argument("--audit")
    args = parser.parse_args()
    if args.audit:
        audit_into(args.audit, args.out)
    # The cpu profile's recipe (one-cycle, Nesterov, weight decay, label smoothing) at a global batch of 16.
    config = profile(
        "cpu", epochs=args.epochs, batch_size=16, lr=0.05, train_per_class=8, test_per_class=4, workers=0,
        device="cpu", data_dir=args.data,
    )  # fmt: skip
    torch.manual_seed(config.seed)
    model = tiny_batchnorm_network()
    if args.slow:
        model.register_forward_pre_hook(lambda module, inputs: time.sleep(args.slow) if module.training else None)
    fit(config, model=model, out=args.out, resume=args.resume, quiet=True)


if __name__ == "__main__":
    main()
