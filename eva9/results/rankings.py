"""The GradCAM chapter's ranking of the CAM family, recorded once per published network.

Ranking 27 maps by deletion and insertion curves takes most of the chapter's time on a CPU (about 8,600 forward
passes), and for published weights it gives the same numbers every time. ``benchmarks/record_ranking.py`` computes
it as the chapter does and writes ``results/rankings/<weights>.json`` (:func:`write_ranking`) with what it was
computed for (the weights' SHA-256, the images' SHA-256, the methods, layers, steps and seed) and where (date,
machine, versions, commit); ``--check`` recomputes it and compares. The chapter reads it back
(:func:`recorded_ranking`) only when all of that matches what it would compute, else it computes the ranking live.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..files import write_atomic
from ..gradcam import Faithfulness
from ..provenance import provenance
from ..weights import results_dir

SCHEMA_VERSION = 1
RANKINGS = "rankings"
"""The folder of recorded rankings inside the results folder."""
MAX_BYTES = 8 * 1024 * 1024
"""The largest recorded ranking read (27 rows × 2 curves × 20 images is about 0.3 MB)."""


def images_sha256(images: torch.Tensor) -> str:
    """The SHA-256 of a batch of images as float32 values in C order: which images a ranking was computed on."""
    return hashlib.sha256(images.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()


def ranking_path(name: str, directory: str | Path | None = None) -> Path | None:
    """Where the ranking of the published weights ``name`` is recorded (None without a results folder)."""
    folder = Path(directory) if directory is not None else results_dir()
    return None if folder is None else folder / RANKINGS / f"{name}.json"


def ranking_settings(
    weights_sha256: str, images: torch.Tensor, methods: Sequence[str], layers: Sequence[str], steps: int, seed: int
) -> dict[str, Any]:
    """What a ranking depends on: a recorded one is used only where all of this is the same."""
    return {
        "weights_sha256": weights_sha256,
        "images": int(images.shape[0]),
        "images_sha256": images_sha256(images),
        "methods": list(methods),
        "layers": list(layers),
        "steps": int(steps),
        "seed": int(seed),
    }


def write_ranking(path: str | Path, scores: Faithfulness, settings: dict[str, Any], **about: Any) -> Path:
    """Record ``scores`` at ``path`` (atomically) with their ``settings``, provenance and ``about`` (command, commit,
    seconds)."""
    path = Path(path)
    record = {"schema": SCHEMA_VERSION, "settings": settings, **provenance(), **about, "scores": scores.to_dict()}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record, indent=1, allow_nan=False) + "\n")
    return path


def load_ranking(path: str | Path) -> tuple[Faithfulness, dict[str, Any]]:
    """A recorded ranking and its record (everything but the scores); a ``ValueError`` naming the file if it is not
    one."""
    path = Path(path)
    if path.stat().st_size > MAX_BYTES:
        raise ValueError(f"{path}: larger than {MAX_BYTES} bytes, not a recorded ranking")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if (
        not isinstance(record, dict)
        or record.get("schema") != SCHEMA_VERSION
        or not isinstance(record.get("settings"), dict)
    ):
        raise ValueError(f"{path}: not a recorded ranking of schema {SCHEMA_VERSION}")
    scores = Faithfulness.from_dict(record.pop("scores", None), str(path))
    return scores, record


def recorded_ranking(name: str, settings: dict[str, Any], directory: str | Path | None = None):
    """The ranking recorded for the published weights ``name`` and its record, if one was computed with exactly
    ``settings`` (see :func:`ranking_settings`); else None."""
    path = ranking_path(name, directory)
    if path is None or not path.is_file():
        return None
    scores, record = load_ranking(path)
    return (scores, record) if record["settings"] == settings else None
