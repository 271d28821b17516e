"""Record the GradCAM chapter's ranking of the CAM family for the published weights the chapters explain.

python benchmarks/record_ranking.py [--check] [--data-dir D]

Computes ``eva9.book.faithfulness_scores`` exactly as the chapter's cell does (the network of
``book.trained_network()``, its test images ``book.class_samples(..., per_class=20, seed=0)[::10]``, the four
layers, 8 steps, seed 0) and writes ``results/rankings/<weights>.json`` with those settings (the weights' and the
images' SHA-256 among them), the date, machine, versions, commit and the seconds it took. The chapter reads it
back only where every setting is the same, so a change to the chapter's images or settings makes it compute the
ranking live again until this is re-run. ``--check`` recomputes the ranking and compares it with the record
(largest difference of any probability or correlation, tolerance 1e-4), exit 1 if they differ; it writes nothing.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from eva9 import book, gradcam, weights
from eva9.results import rankings

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["layer1", "layer2", "layer3", "layer4"]
STEPS = 8
TOLERANCE = 1e-4


def chapter_inputs() -> tuple[book.Network, torch.Tensor]:
    """The network and the 20 test images the GradCAM chapter ranks the maps on."""
    network = book.trained_network(quiet=True)
    if not network.published:
        raise SystemExit("no published weights here (or EVA9_PROFILE is set): only published weights are recorded")
    test_set = book.test_loader(network.config).dataset
    sample, _ = book.class_samples(test_set, per_class=20, seed=0)
    return network, sample[::10]


def largest_difference(a: gradcam.Faithfulness, b: gradcam.Faithfulness) -> float:
    """The largest absolute difference between two rankings' probabilities and correlations (inf if rows differ)."""
    if set(a.deletion) != set(b.deletion) or a.steps != b.steps:
        return math.inf
    worst = 0.0
    for row in a.deletion:
        for x, y in [(a.deletion[row], b.deletion[row]), (a.insertion[row], b.insertion[row])]:
            if x.probabilities.shape != y.probabilities.shape or not torch.equal(x.targets, y.targets):
                return math.inf
            worst = max(worst, float((x.probabilities - y.probabilities).abs().max()))
        r, s = a.randomization[row], b.randomization[row]
        if not torch.equal(r.isnan(), s.isnan()):
            return math.inf
        worst = max(worst, float((r - s).nan_to_num(0.0).abs().max()))
    return worst


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()

    commit = os.environ.get("EVA9_COMMIT") or git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("-dirty" if git("status", "--porcelain", "--", "eva9", "book") else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="recompute and compare with the record; write nothing")
    parser.add_argument("--data-dir", help="CIFAR-10 copy (default: $EVA9_DATA_DIR)")
    args = parser.parse_args(argv)
    if args.data_dir:
        os.environ["EVA9_DATA_DIR"] = str(Path(args.data_dir).resolve())
    network, images = chapter_inputs()
    settings = rankings.ranking_settings(
        weights.get(network.name).sha256, images, book.RANKING_METHODS, LAYERS, STEPS, 0
    )
    path = rankings.ranking_path(network.name)
    if path is None:
        raise SystemExit("no results folder: run this in a checkout (or set EVA9_RESULTS_DIR)")
    recorded = rankings.recorded_ranking(network.name, settings) if args.check else None
    if args.check and recorded is None:
        print(f"{path}: no ranking recorded for these weights, images and settings")
        return 1
    print(f"Ranking {len(LAYERS) * len(book.RANKING_METHODS) + 3} maps on {len(images)} images of '{network.name}'")
    start = time.perf_counter()
    scores = gradcam.faithfulness_scores(network.model, images, book.RANKING_METHODS, LAYERS, steps=STEPS, seed=0)
    seconds = time.perf_counter() - start
    print(scores.table())
    if recorded is not None:
        difference = largest_difference(scores, recorded[0])
        print(
            f"recomputed in {seconds:.0f} s; largest difference from {path}: {difference:.2e} (tolerance {TOLERANCE})"
        )
        return 0 if difference <= TOLERANCE else 1
    about = {
        "command": book.RANKING_COMMAND,
        "commit": _commit(),
        "seconds": round(seconds, 1),
        "threads": torch.get_num_threads(),
    }
    rankings.write_ranking(path, scores, settings, **about)
    print(f"recorded in {path} ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
