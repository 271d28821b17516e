"""Publish a finished run folder trained elsewhere as a recorded run: ``results/<name>.json`` and its weights.

    python benchmarks/publish_run.py RUN_DIR --name NAME --date YYYY-MM-DD --machine TEXT [--commit C]
                                     [--weights FILE] [--workers N] [--note TEXT] [--out results]

For runs that ``benchmarks/full_runs.py`` did not make itself, such as the CPU reference run in
``shared/reference-runs/fast-8ep-cpu`` (``config.json``, ``history.json``, ``metrics.json`` as ``fit`` wrote them,
and the float16 weights). The record is built by the same code as ``full_runs.py``'s, with the provenance the run
folder's README states (date, machine, commit) instead of this machine's; the weights are copied to
``<out>/weights/<model>-<name>-<h>.pt`` (the file's name must already carry its hash, or it is re-saved) and then
scored here in float32 on the run's test images, plainly and with flip test-time augmentation. ``results/index.json``
is rewritten. A record that exists already is never overwritten.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from full_runs import build_record, check_published_weights  # noqa: E402

from eva9.files import write_atomic  # noqa: E402
from eva9.results import DATA_SOURCES, save_weights, sha256_of, write_listings  # noqa: E402
from eva9.train import History, TrainConfig  # noqa: E402
from eva9.weights import load_state_dict  # noqa: E402


def publish(
    run_dir: Path,
    name: str,
    out: Path,
    date: str,
    machine: str,
    commit: str | None,
    weights: Path | None,
    workers: int | None,
    note: str | None,
    data_dir: str | None,
    data: str | None = None,
) -> dict:
    """Write ``out/<name>.json`` and ``out/weights/...`` for the run in ``run_dir``; return the record."""
    record_path = out / f"{name}.json"
    if record_path.exists():
        raise FileExistsError(f"{record_path} exists; a published record is never overwritten (remove it first)")
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    for key in ("test_acc", "test_loss"):
        if not isinstance(metrics.get(key), (int, float)) or not math.isfinite(metrics[key]):
            raise ValueError(f"{run_dir / 'metrics.json'} records a {key} of {metrics.get(key)!r}, not a number: a"
                             " diverged or damaged run is not published")  # fmt: skip
    weights = weights or run_dir / "model.pt"
    state = load_state_dict(weights)  # a state_dict of tensors, every one finite, or one line saying why not
    history = History.load(run_dir)
    train_seconds = sum(float(row["seconds"]) for row in history.epochs)
    record = build_record(config, history, metrics, train_seconds, resumed=False, data=data)
    record.update(date=date, machine={"description": machine}, commit=commit, loader_workers=workers)
    if note:
        record["note"] = note
    target = out / "weights" / f"{config['model']}-{name}-{sha256_of(weights)[:8]}.pt"
    if weights.name == target.name:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(weights, target)
    else:
        target = save_weights(state, name, out / "weights", model=config["model"])
    scoring = TrainConfig.from_dict(
        {**config, "device": "auto", "workers": None, "data_dir": data_dir or config.get("data_dir")}
    )
    record["weights"] = check_published_weights(target, scoring, record["final_test_acc"])
    record["run"] = name
    write_atomic(record_path, json.dumps(record, indent=2) + "\n")
    write_listings(out)
    return record


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="the finished run folder (config.json, history.json, metrics.json)")
    parser.add_argument("--name", required=True, help="the published name, e.g. fast-8ep-cpu")
    parser.add_argument("--date", required=True, help="when the run was trained (YYYY-MM-DD)")
    parser.add_argument("--machine", required=True, help="what it was trained on, in words")
    parser.add_argument("--commit", default=None, help="the eva9 commit that trained it")
    parser.add_argument("--weights", type=Path, default=None, help="its weights file (default: RUN_DIR/model.pt)")
    parser.add_argument("--workers", type=int, default=None, help="the loader workers it used")
    parser.add_argument("--note", default=None, help="one line on what the run is")
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 folder to score on (default: $EVA9_DATA_DIR)")
    parser.add_argument(
        "--data",
        choices=sorted(DATA_SOURCES),
        default=None,
        help="the copy of CIFAR-10 the run was trained and tested on (recorded as the record's 'data')",
    )
    parser.add_argument("--out", type=Path, default=Path("results"), help="results folder (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        record = publish(
            args.run_dir,
            args.name,
            args.out,
            args.date,
            args.machine,
            args.commit,
            args.weights,
            args.workers,
            args.note,
            args.data_dir,
            args.data,
        )
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"publish_run.py: {error}", file=sys.stderr)
        return 1
    weights = record["weights"]
    print(
        f"{args.name}: {record['final_test_acc']:.2%} recorded; {weights['file']} (sha256 {weights['sha256']}) "
        f"scores {weights['test_acc_float32']:.2%} as float32 on {weights['scored_on']} "
        f"({weights['test_acc_float32_flip_tta']:.2%} with flip TTA) -> {args.out / (args.name + '.json')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
