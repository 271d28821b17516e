"""Full training runs, recorded: train profiles end to end with ``eva9.train.fit`` and write ``results/<profile>.json``.

    python benchmarks/full_runs.py [--profile seed --profile fast] [--epochs N] [--workers N] [--data-dir D]
                                   [--out results] [--runs-dir runs] [--resume] [--quiet]

Meant for one GPU (see benchmarks/README.md, "Full runs on a GPU"); on a CPU only the ``smoke`` profile is
practical (``--profile smoke --out /tmp/results``). Each record holds the per-epoch history (with training and
evaluation images/s), the epoch and the training seconds at which test accuracy first reached 87%, the final test
and train accuracy, per-class accuracy, the confusion matrix, the device name, package versions, the commit, the
date and the wall time: ``wall_seconds`` is the sum of the per-epoch seconds in the history, over the run's
whole life however often it was resumed (``invocation_seconds`` is the last invocation's own wall time, start-up
and data loading included, about 0 s when it only found a finished run). The final weights are published as float16 in
``<out>/weights/resnet18-<profile>-<h>.pt``
(``<h>``: the first 8 hex digits of the file's SHA-256), and the record says how that file scores when loaded into
a fresh float32 ResNet18 on the run's device, with and without flip test-time augmentation. The run folder of each
profile (checkpoint, weights, metrics.json) is kept under ``--runs-dir`` so that ``--resume`` can finish a run
that was interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from eva9.analysis import SHORT_NAMES, reliability_table
from eva9.data import copy_kind, default_workers, test_loader
from eva9.files import write_atomic
from eva9.results import (
    SCHEMA_VERSION,
    TARGET_ACCURACY,
    epochs_to_target,
    provenance,
    save_weights,
    sha256_of,
    validate_run,
    write_listings,
)
from eva9.train import History, RunFolder, TrainConfig, build_model, fit, predict, profile
from eva9.utils import pick_device

RELOAD_TOLERANCE = 0.001
"""How far (as a fraction) the published float16 weights may score from the recorded final test accuracy."""

CALIBRATION_BINS = 15
"""Confidence bins of the expected calibration error recorded with the published weights (Guo et al. 2017)."""

DEFAULT_PROFILES = ("seed", "fast")


def commit() -> str | None:
    """The eva9 commit that ran: ``$EVA9_COMMIT`` when set, else ``git rev-parse HEAD`` (``-dirty`` if changed).

    ``$EVA9_COMMIT`` wins because a copied tree can carry a ``.git`` of another commit than its files: on the first
    GPU run, the device's copy answered with the commit the checkout was made from, not the one whose files ran.
    """
    if os.environ.get("EVA9_COMMIT"):
        return os.environ["EVA9_COMMIT"]
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, check=True).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def check_published_weights(path: Path, config: TrainConfig, recorded_test_acc: float) -> dict:
    """Load the float16 file into a fresh float32 model on the run's device and score the run's test images.

    Scored in float32 (no autocast), once plainly and once with flip test-time augmentation; ``matches_record`` says
    whether the plain accuracy is within ``RELOAD_TOLERANCE`` of the accuracy recorded during training, and
    ``calibration`` holds the expected calibration error of the plain predictions.
    """
    device = pick_device(config.device)
    model = build_model(config.model)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.to(device)
    loader = test_loader(
        config.data_dir,
        batch_size=config.batch_size,
        workers=config.workers,
        per_class=config.test_per_class,
        seed=config.seed,
        device=device,
    )
    plain = predict(model, loader)
    mirrored = predict(model, ((images.flip(-1), labels) for images, labels in loader))
    tta_preds = ((plain.logits + mirrored.logits) / 2).argmax(1)  # predict(tta=True)'s logits, from the same passes
    accuracy = float((plain.preds == plain.labels).double().mean())
    accuracy_tta = float((tta_preds == plain.labels).double().mean())
    calibration = reliability_table(plain.logits.softmax(dim=1), plain.labels, bins=CALIBRATION_BINS)
    return {
        "file": path.name,
        "sha256": sha256_of(path),
        "dtype": "float16",
        "scored_on": str(device),
        "test_images": len(loader.dataset),
        "test_acc_float32": accuracy,
        "test_acc_float32_flip_tta": accuracy_tta,
        "matches_record": abs(accuracy - recorded_test_acc) <= RELOAD_TOLERANCE,
        "tolerance": RELOAD_TOLERANCE,
        "calibration": {"ece": calibration.ece, "bins": CALIBRATION_BINS},  # shown in the weights' model card
    }


def build_record(
    config: dict,
    history: History,
    metrics: dict,
    invocation_seconds: float,
    resumed: bool,
    data: str | None = None,
) -> dict:
    """The recorded-run dict (see ``eva9.results``) from a finished run's config, history and metrics.json.

    ``wall_seconds`` is summed from the history (every epoch the run ever trained), not taken from the invocation.
    ``data`` names the copy of CIFAR-10 the run was trained and tested on (a key of ``eva9.results.DATA_SOURCES``).
    """
    first, seconds = epochs_to_target(history.epochs, TARGET_ACCURACY)
    record = {
        "schema": SCHEMA_VERSION,
        "profile": config["profile"],
        "device": metrics["device"],
        **provenance(),
        "commit": commit(),
        "loader_workers": config.get("workers") if config.get("workers") is not None else default_workers(),
        "versions": metrics["versions"],
        "config": config,
        "history": history.to_dict(),
        "wall_seconds": sum(float(epoch["seconds"]) for epoch in history.epochs),
        "invocation_seconds": invocation_seconds,
        "train_seconds": metrics["wall_seconds"],
        "resumed": resumed,
        "final_test_acc": metrics["test_acc"],
        "final_train_acc": metrics["train_acc"],
        "final_test_loss": metrics["test_loss"],
        "test_images": metrics["test_images"],
        "target": TARGET_ACCURACY,
        "epochs_to_target": first,
        "seconds_to_target": seconds,
        "classes": list(SHORT_NAMES),
        "class_accuracy": [metrics["class_accuracy"][name] for name in SHORT_NAMES],
        "confusion_matrix": metrics["confusion_matrix"],
    }
    if data is not None:
        record["data"] = {"train": data, "test": data}
    return validate_run(record, f"record of profile {config['profile']!r}")


def record_profile(
    name: str,
    out: Path,
    runs_dir: Path = Path("runs"),
    epochs: int | None = None,
    data_dir: str | None = None,
    resume: bool = False,
    quiet: bool = False,
    workers: int | None = None,
    run_name: str | None = None,
    **overrides: Any,
) -> dict:
    """Train profile ``name`` (continuing its run folder if ``resume``), write ``out/<run>.json`` and the
    published weights ``out/weights/<model>-<run>-<h>.pt``; return the record.

    ``run`` is ``run_name``, else the profile's name: name a run that changes the profile with ``overrides``
    (a tuning trial), so that its record, weights and run folder stand apart from the profile's own.
    """
    run_name = run_name or name
    if epochs is not None:
        overrides["epochs"] = epochs
    if workers is not None:
        overrides["workers"] = workers
    if data_dir is not None:
        overrides["data_dir"] = str(data_dir)
    config = profile(name, **overrides)
    run_dir = Path(runs_dir) / f"full-{run_name}"
    resumed = resume and (run_dir / "config.json").is_file()
    start = time.perf_counter()
    history = fit(config, out=run_dir, resume=resumed, quiet=quiet).history
    invocation_seconds = time.perf_counter() - start
    folder = RunFolder(run_dir)
    metrics = folder.metrics()
    record = build_record(config.to_dict(), history, metrics, invocation_seconds, resumed, copy_kind(config.data_dir))
    out = Path(out)
    weights = save_weights(
        folder.model_state(),
        run_name,
        out / "weights",
        model=config.model,
    )
    record["weights"] = check_published_weights(weights, config, record["final_test_acc"])
    out.mkdir(parents=True, exist_ok=True)
    record["run"] = run_name
    write_atomic(out / f"{run_name}.json", json.dumps(record, indent=2) + "\n")
    write_listings(out)  # the index readers without a checkout download, and the package's weights manifest
    return record


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--profile",
        action="append",
        choices=("seed", "fast", "smoke"),
        help="profile to run (repeatable; default: seed and fast)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="override the profile's number of epochs")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="data-loader worker processes (default: eva9.data.default_workers(), usable cores - 1)",
    )
    parser.add_argument(
        "--train-per-class",
        type=int,
        default=None,
        help="train on a stratified subset of N images per class (a dry run; default: all 5,000)",
    )
    parser.add_argument(
        "--test-per-class",
        type=int,
        default=None,
        help="test on a stratified subset of N images per class (a dry run; default: all 1,000)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        dest="changes",
        help="change a TrainConfig field of the profile, VALUE in JSON (repeatable; needs --name)",
    )
    parser.add_argument(
        "--name",
        default=None,
        help="the run's name for its record, weights and run folder "
        "(default: the profile's; needs exactly one --profile)",
    )
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 folder (default: $EVA9_DATA_DIR)")
    parser.add_argument(
        "--out", type=Path, default=Path("results"), help="folder for <profile>.json (default: %(default)s)"
    )
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=Path("runs"),
        help="parent of the run folders full-<profile> (default: %(default)s)",
    )
    parser.add_argument("--resume", action="store_true", help="continue interrupted runs in --runs-dir")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    args = parser.parse_args(argv)
    profiles = args.profile or DEFAULT_PROFILES
    if args.name is not None and len(profiles) != 1:
        parser.error("--name names one run: give exactly one --profile")
    if args.changes and args.name is None:
        parser.error("--set changes the profile: give the run a --name, so that it does not pass for the profile")
    changes = {}
    for change in args.changes:
        field, sep, value = change.partition("=")
        try:
            changes[field] = json.loads(value)
        except json.JSONDecodeError:
            parser.error(f"--set {change}: write FIELD=VALUE with VALUE in JSON, for example lr=0.4")
        if not sep:
            parser.error(f"--set {change}: write FIELD=VALUE")
    for name in profiles:
        try:
            subsets = {
                key: value
                for key, value in (("train_per_class", args.train_per_class), ("test_per_class", args.test_per_class))
                if value is not None
            }
            record = record_profile(
                name,
                args.out,
                args.runs_dir,
                args.epochs,
                args.data_dir,
                args.resume,
                args.quiet,
                args.workers,
                args.name,
                **subsets,
                **changes,
            )
        except (ValueError, FileNotFoundError) as error:
            print(f"full_runs.py: {name}: {error}", file=sys.stderr)
            return 1
        name = record["run"]
        reached = (
            f"87% at epoch {record['epochs_to_target']} ({record['seconds_to_target']:.0f} s of training)"
            if record["epochs_to_target"]
            else "87% not reached"
        )
        print(
            f"{name}: final test accuracy {record['final_test_acc']:.2%} after {len(record['history']['epochs'])} "
            f"epochs on {record['device']}; {reached}; wall {record['wall_seconds']:.0f} s -> "
            f"{args.out / (name + '.json')}"
        )
        weights = record["weights"]
        print(
            f"{name}: weights {args.out / 'weights' / weights['file']} (sha256 {weights['sha256']}); as float32 on "
            f"{weights['scored_on']}: {weights['test_acc_float32']:.2%} (record {record['final_test_acc']:.2%}: "
            f"{'within' if weights['matches_record'] else 'NOT within'} {100 * weights['tolerance']:.1f} "
            f"percentage point), {weights['test_acc_float32_flip_tta']:.2%} with flip TTA"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
