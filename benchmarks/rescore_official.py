"""Re-score every recorded run's published weights on the official CIFAR-10 test images and record the scores.

    python benchmarks/rescore_official.py --data-dir ../shared/cifar10 [--results results] [--workers N]
                                          [--trained-on jpeg75] [--only NAME ...] [--again] [--data-only]

The folder must be torchvision's ``cifar-10-batches-py`` layout (the official, lossless images); an image-folder
copy is refused. Each record's float16 weights are loaded into a fresh float32 ResNet18 on the CPU and score all
10,000 test images, plainly and with flip test-time augmentation (the scoring of ``full_runs.py``); the scores go
into the record's ``rescored["official"]`` beside its own numbers, which are left as they are, through
``eva9.results.update_record``, and ``results/index.json`` is rewritten. ``--trained-on`` also states, for records
that do not say it yet, which copy they were trained and tested on (``data``): the three runs recorded before the
official images were here were trained and tested on the JPEG-75 image-folder copy. A record whose weights were
scored already is skipped (``--again`` scores it anew), so an interrupted call can be repeated; ``--data-only``
only writes ``data`` (from ``--trained-on``) into the records that lack it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from full_runs import check_published_weights, commit  # noqa: E402

from eva9.data import copy_kind  # noqa: E402
from eva9.results import DATA_SOURCES, load_run_file, provenance, record_paths, update_record, write_listings  # noqa: E402
from eva9.train import TrainConfig  # noqa: E402


def rescore(path: Path, data_dir: str, workers: int | None, trained_on: str | None) -> dict:
    """Score the weights of the record at ``path`` on the official test images (CPU, float32); update the record."""
    record = load_run_file(path)
    config = TrainConfig.from_dict(record["config"]).replace(
        device="cpu", data_dir=data_dir, test_per_class=None, workers=workers
    )
    weights = path.parent / "weights" / record["weights"]["file"]
    scored = check_published_weights(weights, config, record["final_test_acc"])
    score = {
        "test_images": scored["test_images"],
        "test_acc_float32": scored["test_acc_float32"],
        "test_acc_float32_flip_tta": scored["test_acc_float32_flip_tta"],
        "scored_on": scored["scored_on"],
        "weights_sha256": scored["sha256"],
        **provenance(),
        "commit": commit(),
    }
    changes: dict = {"rescored": {"official": score}}
    if trained_on is not None and "data" not in record:
        changes["data"] = {"train": trained_on, "test": trained_on}
    return update_record(path, changes)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="the official images, cifar-10-batches-py layout")
    parser.add_argument("--results", type=Path, default=Path("results"), help="results folder (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: usable cores - 1)")
    parser.add_argument(
        "--trained-on",
        choices=sorted(DATA_SOURCES),
        default=None,
        help="the copy that records without a 'data' field were trained and tested on",
    )
    parser.add_argument(
        "--only", action="append", metavar="NAME", help="score only this record, in the order given (repeatable)"
    )
    parser.add_argument(
        "--data-only",
        action="store_true",
        help="only state --trained-on in the records that lack 'data'; score nothing",
    )
    parser.add_argument("--again", action="store_true", help="also score records that were scored already")
    args = parser.parse_args(argv)
    if args.data_only:
        if args.trained_on is None:
            parser.error("--data-only needs --trained-on")
        for path in record_paths(args.results):
            if "data" not in load_run_file(path):
                update_record(path, {"data": {"train": args.trained_on, "test": args.trained_on}})
                print(f"{path.stem}: trained and tested on {args.trained_on}")
        write_listings(args.results)
        return 0
    if copy_kind(args.data_dir) != "official":
        print(
            f"rescore_official.py: {args.data_dir} is not a cifar-10-batches-py copy of the official images",
            file=sys.stderr,
        )
        return 1
    paths = {path.stem: path for path in record_paths(args.results)}
    unknown = sorted(set(args.only or []) - set(paths))
    if unknown:
        print(f"rescore_official.py: no record called {', '.join(unknown)} in {args.results}", file=sys.stderr)
        return 1
    for name in args.only or sorted(paths):
        path = paths[name]
        record = load_run_file(path)
        done = record.get("rescored", {}).get("official", {}).get("weights_sha256") == record["weights"]["sha256"]
        if done and not args.again:
            print(f"{path.stem}: already scored on the official test images (--again scores it anew)")
            continue
        record = rescore(path, args.data_dir, args.workers, args.trained_on)
        score = record["rescored"]["official"]
        print(
            f"{path.stem}: {score['test_acc_float32']:.2%} on the {score['test_images']:,} official test images "
            f"({score['test_acc_float32_flip_tta']:.2%} with flip TTA), float32 on {score['scored_on']}; "
            f"recorded {record['final_test_acc']:.2%} on {record.get('test_images')} test images of "
            f"{record.get('data', {}).get('test', '?')}"
        )
    write_listings(args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
