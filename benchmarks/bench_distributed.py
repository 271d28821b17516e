"""The cost of data parallelism on a CPU: the same run trained by one process and by 2 gloo processes under torchrun.

Both train ResNet18 with ``eva9 train`` (the smoke profile's recipe on a stratified subset, global batch 50,
no loader workers) and the wall seconds of each epoch are read from the run's ``history.json``: training plus the
sharded evaluation, without the processes' start. The contestants alternate (one, two, two, one, ...) so that a
shared machine's changing load hits both alike. On a CPU both use the same cores: one process with torch's
threads, or two processes of one thread each (torchrun sets ``OMP_NUM_THREADS=1``) that also exchange gradients and
BatchNorm statistics through gloo; a third contestant is one process on one thread. On a CPU this measures the
cost of the exchange (and of the threads), not a speed-up: scaling needs one GPU per process.

    python benchmarks/bench_distributed.py [--rounds 2] [--epochs 1] [--train-per-class 50]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


CONTESTANTS = {"1 process": (1, None), "1 process, 1 thread": (1, "1"), "2 gloo processes": (2, None)}
"""Name: (processes, OMP_NUM_THREADS). torch's default threads in one process (2 on a 2-core CPU); the same run
on one thread, which is what each of torchrun's processes gets; and 2 processes under torchrun."""


def train(processes: int, threads: str | None, out: Path, args: argparse.Namespace) -> list[float]:
    """Train one run with ``processes`` processes (``threads``: OMP_NUM_THREADS); the seconds of its epochs."""
    launcher = [sys.executable, "-m", "eva9"] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
        "--master-addr", "127.0.0.1", "--master-port", _free_port(), "-m", "eva9",
    ]  # fmt: skip
    command = [*launcher, "train", "--profile", "smoke", "--epochs", str(args.epochs), "--train-per-class",
               str(args.train_per_class), "--test-per-class", str(args.test_per_class), "--workers", "0",
               "--device", "cpu", "--quiet", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = threads
    subprocess.run(command, env=env, cwd=REPO, check=True, capture_output=True, timeout=3600)
    return [epoch["seconds"] for epoch in json.loads((out / "history.json").read_text())["epochs"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-per-class", type=int, default=50)
    parser.add_argument("--test-per-class", type=int, default=25)
    parser.add_argument("--out", type=Path, default=common.RESULTS, help="folder for distributed.json")
    args = parser.parse_args()
    seconds: dict[str, list[float]] = {name: [] for name in CONTESTANTS}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            for name in CONTESTANTS if round_ % 2 == 0 else list(CONTESTANTS)[::-1]:
                processes, threads = CONTESTANTS[name]
                seconds[name] += train(
                    processes, threads, Path(scratch) / f"{round_}-{list(CONTESTANTS).index(name)}", args
                )
                print(f"round {round_ + 1}: {name}: {seconds[name][-args.epochs :]}", flush=True)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    measurements = {
        "what": "wall seconds per epoch (training + evaluation) of the smoke recipe on ResNet18, CPU",
        "seconds_per_epoch": seconds,
        "median_seconds_per_epoch": medians,
        "two_over_one": medians["2 gloo processes"] / medians["1 process"],
        "two_over_one_thread": medians["2 gloo processes"] / medians["1 process, 1 thread"],
    }
    settings = {key: value for key, value in vars(args).items() if key != "out"}
    common.record("distributed", settings, measurements, out=args.out)
    for name, median in medians.items():
        print(f"{name:>20}: {median:7.1f} s per epoch (median of {len(seconds[name])})")
    print(f"2 processes / 1 process: {measurements['two_over_one']:.2f}x the wall time per epoch")
    print(f"2 processes / 1 process on 1 thread: {measurements['two_over_one_thread']:.2f}x")


if __name__ == "__main__":
    main()
