"""Peak memory: the largest resident set size (RSS) of a child process running a smoke training run.

The child runs ``eva9.train.fit`` on the ``smoke`` profile (the same work as ``python -m eva9 train --profile
smoke``) and reports its own peak RSS, the kernel's ``VmHWM`` from ``/proc/self/status``. (``getrusage`` /
``os.wait4`` are no good here: on Linux a child's ``ru_maxrss`` starts at the RSS of the parent it was forked
from, so a child of a big process, such as pytest with torch loaded, looks as big as its parent.) A second child that
only imports torch and eva9 and builds
ResNet18 gives the baseline, so the difference is what training itself costs. Needs ``EVA9_DATA_DIR`` (or
``--data-dir``); DataLoader workers are separate processes and are not counted in the child's own peak.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

NAME = "memory"
FULL = {"overrides": {}}
QUICK = FULL
TINY = {"overrides": {"train_per_class": 1, "test_per_class": 1, "batch_size": 5, "workers": 0}}

REPORT_PEAK = """
def _report_peak():
    with open("/proc/self/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(f"PEAK_RSS_KIB {kib}")
"""

BASELINE = (
    REPORT_PEAK
    + """
import torch
import eva9.train
from eva9.models import resnet18
resnet18()
_report_peak()
"""
)

TRAIN = (
    REPORT_PEAK
    + """
import json, sys
from eva9.models import resnet18
from eva9.train import fit, profile
config = profile("smoke", **json.loads(sys.argv[1]))
history = fit(config, model=resnet18(), out=sys.argv[2], quiet=True).history
print(f"final test accuracy {history.epochs[-1]['test_acc']:.3f}")
_report_peak()
"""
)


def peak_rss(code: str, *args: str, env: dict | None = None) -> tuple[float, float, str]:
    """Run ``python -c code args``; return its peak RSS in MiB, its wall seconds and its last line before the peak."""
    if not Path("/proc/self/status").is_file():
        raise SystemExit("bench_memory reads /proc/self/status, so it runs on Linux only")
    start = time.perf_counter()
    child = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        raise RuntimeError(f"the child process failed (exit {child.returncode}):\n{child.stderr[-3000:]}")
    lines = child.stdout.strip().splitlines()
    kib = int(lines[-1].split()[1])
    return kib / 1024, seconds, lines[-2] if len(lines) > 1 else ""


def run(settings: dict = FULL, out: Path | None = common.RESULTS, root: str | None = None) -> dict:
    """Measure the baseline and the smoke run's peak RSS; print a table; return (and write) the record."""
    root = root if root is not None else os.environ.get("EVA9_DATA_DIR")
    if not root:
        raise SystemExit("bench_memory needs the CIFAR-10 copy: set EVA9_DATA_DIR or pass --data-dir")
    env = {**os.environ, "EVA9_DATA_DIR": str(root)}
    baseline_mib, baseline_s, _ = peak_rss(BASELINE, env=env)
    with tempfile.TemporaryDirectory() as run_dir:
        train_mib, train_s, last_line = peak_rss(TRAIN, json.dumps(settings["overrides"]), run_dir, env=env)
    common.print_table(
        "Peak RSS of a child process (MiB)",
        ["child", "peak RSS MiB", "wall s"],
        [
            ["import torch + eva9, build ResNet18", baseline_mib, baseline_s],
            [
                f"fit(smoke{', ' if settings['overrides'] else ''}"
                f"{', '.join(f'{k}={v}' for k, v in settings['overrides'].items())})",
                train_mib,
                train_s,
            ],
        ],
    )
    print(f"training adds {train_mib - baseline_mib:.0f} MiB; child said: {last_line}")
    return common.record(
        NAME,
        {**settings, "data_dir": str(root)},
        {
            "baseline_peak_rss_mib": baseline_mib,
            "smoke_peak_rss_mib": train_mib,
            "training_adds_mib": train_mib - baseline_mib,
            "smoke_wall_seconds": train_s,
            "child_output": last_line,
        },
        out,
    )


if __name__ == "__main__":  # same options as run.py, for this benchmark alone
    import run

    run.main(["--only", NAME, *sys.argv[1:]])
