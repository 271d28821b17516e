"""Publishing recorded runs, the one place that writes what readers download: the float16 weights
(:func:`save_weights`), the manifest of published weights that ships inside the package (:func:`write_manifest`,
read by :mod:`eva9.weights`), the index of records for readers without a checkout (:func:`write_index`), and a
model card for each published weights file (:func:`model_card`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

from .. import weights
from ..files import write_atomic
from .records import DATA_SOURCES, INDEX_FILE, RESULTS_DIR, WEIGHTS_DIR, load_recorded_runs, local_record_paths

__all__ = [
    "save_weights",
    "manifest_entry",
    "manifest",
    "write_manifest",
    "index",
    "write_index",
    "write_listings",
    "model_card",
]

MANIFEST_SCHEMA = 1


def save_weights(
    state_dict: dict, run: str, directory: str | os.PathLike = WEIGHTS_DIR, model: str = "resnet18"
) -> Path:
    """Publish a state_dict as ``<model>-<run>-<h>.pt`` in ``directory``; return the file's path.

    Floating-point tensors are stored as float16 (half the size; a float32 model loads them with
    ``load_state_dict``), others (BatchNorm's step counters) as they are, all contiguous on the CPU. ``<h>`` is the
    first 8 hex digits of the file's SHA-256: torchvision's naming, which ``torch.hub.load_state_dict_from_url(...,
    check_hash=True)`` verifies. The same weights saved again give the same file; an existing file of that name
    with other bytes is never overwritten; weights holding NaN or infinity are refused (WeightsError).
    """
    import torch

    weights.check_finite(state_dict, f"of the run {run}")  # a diverged run's NaN weights are never published
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
        if weights.sha256_of(path) != digest:
            raise ValueError(f"{path} exists with other bytes than these weights; it was not overwritten")
        return path
    directory.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, data)


# ------------------------------------------------------------------------------------------------ the manifest


def _parameters(model: str) -> int:
    from ..train import build_model

    return sum(p.numel() for p in build_model(model).parameters())


def _data(record: dict) -> Any:
    """What the run was trained and tested on: the images its config took, from the copy its ``data`` entry names
    (a key of :data:`DATA_SOURCES`, described in full; any other text as it is)."""
    config = record.get("config", {})
    train, test = config.get("train_per_class"), config.get("test_per_class")
    subsets = {
        "train": "CIFAR-10 train, all 50,000 images" if train is None else f"CIFAR-10 train, {train} per class",
        "test": "CIFAR-10 test, all 10,000 images" if test is None else f"CIFAR-10 test, {test} per class",
    }
    copies = record.get("data") or {}
    return {
        split: f"{subset}, from {DATA_SOURCES.get(copies[split], copies[split])}" if split in copies else subset
        for split, subset in subsets.items()
    }


def manifest_entry(record: dict, directory: str | os.PathLike = RESULTS_DIR) -> dict:
    """The manifest entry of a recorded run with published weights (``record["name"]`` names it)."""
    published = record["weights"]
    config = record.get("config", {})
    model = config.get("model", "resnet18")
    recipe = (
        f"{model}, batch {config.get('batch_size', '?')}, SGD lr {config.get('lr', '?')} "
        f"({config.get('schedule', '?')}), weight decay {config.get('weight_decay', 0)}, "
        f"label smoothing {config.get('label_smoothing', 0)}"
    )
    path = Path(directory) / "weights" / published["file"]
    return {
        "name": record["name"],
        "file": published["file"],
        "sha256": published["sha256"],
        "size": path.stat().st_size if path.is_file() else None,
        "url": f"{weights.RESULTS_URL}/weights/{published['file']}",
        "meta": {
            "model": model,
            "profile": record.get("profile"),
            "recipe": recipe,
            "data": _data(record),
            "epochs": len(record.get("history", {}).get("epochs", [])),
            "final_test_acc": record.get("final_test_acc"),
            "test_images": record.get("test_images"),
            "class_accuracy": dict(zip(record.get("classes", []), record.get("class_accuracy", []))),
            "device": record.get("device"),
            "date": str(record.get("date", ""))[:10],
            "num_params": _parameters(model),
            "dtype": published.get("dtype", "float16"),
            "note": record.get("note"),
        },
    }


def manifest(directory: str | os.PathLike = RESULTS_DIR) -> dict:
    """The manifest of every record with weights in a results folder (what :func:`write_manifest` writes)."""
    runs = sorted(load_recorded_runs(directory), key=lambda run: run["name"])
    return {
        "schema": MANIFEST_SCHEMA,
        "weights": [manifest_entry(run, directory) for run in runs if run.get("weights")],
    }


def write_manifest(directory: str | os.PathLike = RESULTS_DIR, path: str | os.PathLike | None = None) -> Path:
    """Write the manifest of ``directory``'s published weights to ``path`` (default: the package's own)."""
    text = json.dumps(manifest(directory), indent=2) + "\n"
    return write_atomic(Path(path) if path is not None else weights.MANIFEST, text)


# ---------------------------------------------------------------------------------------------------- the index


def index(directory: str | os.PathLike = RESULTS_DIR) -> dict:
    """The index of a results folder: each record's file name and SHA-256 (what :func:`write_index` writes)."""
    return {
        "records": [
            {"file": path.name, "sha256": weights.sha256_of(path)} for path in local_record_paths(Path(directory))
        ]
    }


def write_index(directory: str | os.PathLike = RESULTS_DIR) -> Path:
    """Write ``index.json`` of a results folder (default: the checkout's); return its path."""
    return write_atomic(Path(directory) / INDEX_FILE, json.dumps(index(directory), indent=2) + "\n")


def write_listings(directory: str | os.PathLike = RESULTS_DIR) -> list[Path]:
    """After publishing into ``directory``: its ``index.json`` and the manifest (the package's own for the
    checkout's ``results/``, else ``directory/published.json``, so a trial never changes what the package ships)."""
    directory = Path(directory)
    own = directory.resolve() == RESULTS_DIR.resolve()
    return [write_index(directory), write_manifest(directory, None if own else directory / weights.MANIFEST.name)]


# ------------------------------------------------------------------------------------------------- model cards


def model_card(record: dict) -> str:
    """A model card (Markdown) for a recorded run's published weights: use, data, accuracy per class, calibration,
    limitations."""
    entry = manifest_entry(record)
    meta = entry["meta"]
    data = meta["data"]
    data_text = "; ".join(f"{key}: {value}" for key, value in data.items()) if isinstance(data, dict) else str(data)
    per_class = ", ".join(f"{name} {100 * acc:.1f}%" for name, acc in meta["class_accuracy"].items() if acc is not None)
    ece = (record.get("weights", {}).get("calibration") or {}).get("ece")
    ece_text = f"{100 * ece:.2f}% expected calibration error" if ece is not None else "not measured for this record"
    lines = [
        f"**{entry['name']}** — `{entry['file']}` ({meta['model']}, {meta['num_params']:,} parameters, "
        f"{meta['dtype']}, SHA-256 `{entry['sha256'][:16]}…`)",
        "",
        f"- *For*: classifying and explaining 32×32 CIFAR-10 images in this course (`models.resnet18(weights="
        f'"{entry["name"]}")`); a teaching model, not a product.',
        f"- *Recipe*: {meta['profile']} profile, {meta['epochs']} epochs: {meta['recipe']}; trained on {meta['device']}"
        f" ({meta['date']}).",
        f"- *Data*: {data_text}.",
        f"- *Test accuracy*: {100 * meta['final_test_acc']:.2f}% on {meta['test_images'] or 0:,} images; per class: "
        f"{per_class}.",
        f"- *Calibration*: {ece_text}.",
        "- *Limitations*: it has only seen 32×32 images of ten classes; a photo is shrunk to 32×32 first, so small or "
        "off-centre objects are lost, and anything outside the ten classes is still called one of them.",
        "- *Data reader*: eva9 reads CIFAR-10's pickled batches with `eva9.data.batches`, which runs nothing from a "
        "file and refuses, naming the file, any batch that is not unsigned 8-bit N×3072 pixels whose bytes are in "
        "the file with N integer labels in 0–9 (a crafted pickle could otherwise crash the reader or train on memory "
        "that was never in the file); weights holding NaN or infinity are never published, nor loaded.",
    ]
    if meta.get("note"):
        lines.append(f"- *Note*: {meta['note']}")
    return "\n".join(lines)
