"""Full training runs, recorded: train profiles end to end with ``eva9.train.fit`` and write ``results/<profile>.json``.

    python benchmarks/full_runs.py [--profile seed --profile fast] [--epochs N] [--data-dir D] [--out results]
                                   [--runs-dir runs] [--resume] [--quiet]

Meant for one GPU (see benchmarks/README.md, "Full runs on a GPU"); on a CPU only the ``smoke`` profile is
practical (``--profile smoke --out /tmp/results``). Each record holds the per-epoch history, the epoch and the
training seconds at which test accuracy first reached 87%, the final test and train accuracy, per-class accuracy,
the confusion matrix, the device name, package versions, the date and the wall time. The run folder of each
profile (checkpoint, weights, metrics.json) is kept under ``--runs-dir`` so that ``--resume`` can finish a run
that was interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from eva9.analysis import SHORT_NAMES
from eva9.results import SCHEMA_VERSION, TARGET_ACCURACY, epochs_to_target, provenance, validate_run
from eva9.train import History, fit, profile

DEFAULT_PROFILES = ("seed", "fast")


def build_record(config: dict, history: History, metrics: dict, wall_seconds: float, resumed: bool) -> dict:
    """The recorded-run dict (see ``eva9.results``) from a finished run's config, history and metrics.json."""
    first, seconds = epochs_to_target(history.epochs, TARGET_ACCURACY)
    record = {
        "schema": SCHEMA_VERSION,
        "profile": config["profile"],
        "device": metrics["device"],
        **provenance(),
        "versions": metrics["versions"],
        "config": config,
        "history": history.to_dict(),
        "wall_seconds": wall_seconds,
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
    return validate_run(record, f"record of profile {config['profile']!r}")


def record_profile(
    name: str,
    out: Path,
    runs_dir: Path = Path("runs"),
    epochs: int | None = None,
    data_dir: str | None = None,
    resume: bool = False,
    quiet: bool = False,
    **overrides: Any,
) -> dict:
    """Train profile ``name`` (continuing its run folder if ``resume``), write ``out/<name>.json``, return it."""
    if epochs is not None:
        overrides["epochs"] = epochs
    if data_dir is not None:
        overrides["data_dir"] = str(data_dir)
    config = profile(name, **overrides)
    run_dir = Path(runs_dir) / f"full-{name}"
    resumed = resume and (run_dir / "config.json").is_file()
    start = time.perf_counter()
    history = fit(None, config, out=run_dir, resume=resumed, quiet=quiet)
    wall_seconds = time.perf_counter() - start
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    record = build_record(config.to_dict(), history, metrics, wall_seconds, resumed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="append", choices=("seed", "fast", "smoke"),
                        help="profile to run (repeatable; default: seed and fast)")
    parser.add_argument("--epochs", type=int, default=None, help="override the profile's number of epochs")
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 folder (default: $EVA9_DATA_DIR)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="folder for <profile>.json (default: %(default)s)")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"),
                        help="parent of the run folders full-<profile> (default: %(default)s)")
    parser.add_argument("--resume", action="store_true", help="continue interrupted runs in --runs-dir")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    args = parser.parse_args(argv)
    for name in args.profile or DEFAULT_PROFILES:
        try:
            record = record_profile(name, args.out, args.runs_dir, args.epochs, args.data_dir, args.resume, args.quiet)
        except (ValueError, FileNotFoundError) as error:
            print(f"full_runs.py: {name}: {error}", file=sys.stderr)
            return 1
        reached = (f"87% at epoch {record['epochs_to_target']} ({record['seconds_to_target']:.0f} s of training)"
                   if record["epochs_to_target"] else "87% not reached")
        print(f"{name}: final test accuracy {record['final_test_acc']:.2%} after {len(record['history']['epochs'])} "
              f"epochs on {record['device']}; {reached}; wall {record['wall_seconds']:.0f} s -> "
              f"{args.out / (name + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
