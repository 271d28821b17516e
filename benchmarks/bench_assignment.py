"""Seconds to grade ten S9 submissions with `eva9.assignment.grader` on this machine (goal: under two minutes).

The ten are the deliberately wrong submissions of tests/grading_cases/submissions.py (a flip in the test
pipeline, ImageNet's statistics, no ToTensorV2, 1.x Cutout arguments, GradCAM of the wrong layer, GradCAM that keeps
its hooks, transforms defined in the notebook, weights at about 80 %, an endless loop, a syntax error; the eleventh,
one that reads the hidden tests, is left out to make ten), graded in one `grade_folder` call as a teacher would:
Otter Assign's build first (timed apart), then each notebook in a fresh sandboxed kernel, each s9.py probed, the
hidden tests run. Nothing trains: the accuracy question evaluates the submitted weights on a stratified 1,000 of
the official test images, once per distinct weights file (nine of the ten hand in the seed weights, one the weak
ones). The per-cell limit is 20 s, so the endless loop costs 20 s of it.

    EVA9_DATA_DIR=../shared/cifar10 .venv/bin/python benchmarks/bench_assignment.py [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests" / "grading_cases"))
sys.path.insert(0, str(HERE))

import common  # noqa: E402
import submissions  # noqa: E402

from eva9.assignment.grader import Settings, grade_folder  # noqa: E402

TEN = [
    "test_flip",
    "imagenet_stats",
    "no_totensor",
    "cutout_v1_args",
    "gradcam_wrong_layer",
    "gradcam_keeps_hooks",
    "inline_transforms",
    "weights_80",
    "infinite_loop",
    "syntax_error",
]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=common.RESULTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        master = ROOT / "assignment" / "s9_assignment.ipynb"
        subprocess.run(
            [sys.executable, "-m", "otter", "assign", str(master), str(root / "dist")], check=True, capture_output=True
        )
        build_seconds = time.perf_counter() - start
        folder = root / "submissions"
        folder.mkdir()
        submissions.make(folder, root / "dist", TEN)
        start = time.perf_counter()
        results = grade_folder(folder, root / "dist" / "autograder", root / "grades", Settings(cell_timeout=20, jobs=2))
        grade_seconds = time.perf_counter() - start
        with open(root / "grades" / "grades.csv", newline="") as f:
            table = f.read()
    rows = list(csv.DictReader(table.splitlines()))
    print(table)
    print(
        f"Otter Assign build: {build_seconds:.1f} s; grading {len(results)} submissions: {grade_seconds:.1f} s "
        f"(goal < 120 s); per submission: " + ", ".join(f"{r.student} {r.seconds:.0f} s" for r in results)
    )
    settings = {"submissions": TEN, "cell_timeout": 20, "jobs": 2, "test_per_class": 100, "cpu_count": os.cpu_count()}
    measurements = {
        "build_seconds": build_seconds,
        "grade_seconds": grade_seconds,
        "per_submission_seconds": {r.student: r.seconds for r in results},
        "totals": {row["student"]: row["total"] for row in rows},
        "goal_seconds": 120,
    }
    return common.record("assignment", settings, measurements, args.out)


if __name__ == "__main__":
    main()
