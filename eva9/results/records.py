"""Recorded full runs: the JSON layout, the course's reference run, reading and validating records, and publishing
a run's weights.

A recorded run is one JSON file written by ``benchmarks/full_runs.py`` after training a profile end to end
(normally on a GPU). Accuracies are fractions in [0, 1] everywhere.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..weights import record_paths, sha256_of

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


def save_weights(
    state_dict: dict, run: str, directory: str | os.PathLike = WEIGHTS_DIR, model: str = "resnet18"
) -> Path:
    """Publish a state_dict as ``<model>-<run>-<h>.pt`` in ``directory``; return the file's path.

    Floating-point tensors are stored as float16 (half the size; a float32 model loads them with
    ``load_state_dict``), others (BatchNorm's step counters) as they are, all contiguous on the CPU. ``<h>`` is the
    first 8 hex digits of the file's SHA-256: torchvision's naming, which ``torch.hub.load_state_dict_from_url(...,
    check_hash=True)`` verifies. The same weights saved again give the same file; an existing file of that name
    with other bytes is never overwritten.
    """
    import torch

    half = {
        key: value.detach().to("cpu", torch.float16 if value.is_floating_point() else value.dtype).contiguous()
        for key, value in state_dict.items()
    }
    buffer = io.BytesIO()  # a file object keeps the archive's inner folder name independent of the file name
    torch.save(half, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    directory = Path(directory)
    path = directory / f"{model}-{run}-{digest[:8]}.pt"
    if path.exists():
        if sha256_of(path) != digest:
            raise ValueError(f"{path} exists with other bytes than these weights; it was not overwritten")
        return path
    directory.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


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
    return run


def load_run_file(path: str | os.PathLike) -> dict:
    """Read and validate one recorded-run JSON file; ``run["path"]`` is set to where it came from."""
    path = Path(path)
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{path}: not valid JSON ({error}). Re-create it with `python benchmarks/full_runs.py`."
        ) from None
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
