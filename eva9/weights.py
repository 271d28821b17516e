"""Published weights: which trained networks exist, what each one is, and where its verified file comes from.

A recorded run is ``results/<name>.json`` (see :mod:`eva9.results`); its ``weights`` field names the float16
``state_dict`` published beside it as ``results/weights/resnet18-<name>-<h>.pt``, ``<h>`` being the first 8 hex
digits of the file's SHA-256 (torchvision's naming). Every record with weights is one entry of the registry
(:func:`published`), with its metadata readable without loading any weights. ``eva9.models.resnet18(weights=...)``
loads one by name.

Where a file comes from, in this order:

1. the checkout's ``results/`` folder (``$EVA9_RESULTS_DIR`` names another one);
2. torch's hub cache (``torch.hub.get_dir()``, ``$TORCH_HOME/hub``), where earlier downloads are kept;
3. a download from the repository (:data:`RESULTS_URL`, or ``$EVA9_RESULTS_URL``), hash-checked.

Every file is checked against its full SHA-256 before it is loaded; a file that does not match is never loaded,
and a bad download is never kept. Without a checkout (a pip install, as in Colab) the list of records comes from
``results/index.json`` in the repository, which :func:`write_index` writes and a test keeps in step.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "REPOSITORY",
    "BRANCH",
    "RESULTS_URL",
    "INDEX_FILE",
    "WeightsError",
    "Weights",
    "results_dir",
    "results_url",
    "cache_dir",
    "sha256_of",
    "record_paths",
    "published",
    "get",
    "preferred",
    "load_state_dict",
    "index",
    "write_index",
]

REPOSITORY = "eva9-course/eva9"
"""The GitHub repository (owner/name) that publishes the package, the book, the records and the weights."""

BRANCH = "main"
"""The branch whose ``results/`` folder is published."""

RESULTS_URL = f"https://raw.githubusercontent.com/{REPOSITORY}/{BRANCH}/results"
"""Where the published records and weights are downloaded from when there is no checkout."""

INDEX_FILE = "index.json"
"""The list of recorded runs in ``results/`` (with each file's SHA-256), for readers without a checkout."""

ENV_RESULTS_DIR = "EVA9_RESULTS_DIR"
ENV_RESULTS_URL = "EVA9_RESULTS_URL"

_CHECKOUT_RESULTS = Path(__file__).resolve().parents[1] / "results"

_PARAMETERS = {"resnet18": 11_173_962, "resnet34": 21_282_122}
"""Parameter counts of the models for ten classes (``tests/test_weights.py`` checks them against ``eva9.models``)."""


class WeightsError(ValueError):
    """Published weights that cannot be found, fetched or verified; the message says what to do."""


# -------------------------------------------------------------------------------------------------- locations


def results_dir() -> Path | None:
    """The local folder of recorded runs: ``$EVA9_RESULTS_DIR``, else the checkout's ``results/``; None if neither."""
    value = os.environ.get(ENV_RESULTS_DIR, "").strip()
    if value:
        return Path(value).expanduser()
    return _CHECKOUT_RESULTS if _CHECKOUT_RESULTS.is_dir() else None


def results_url() -> str:
    """The base URL of the published ``results/`` folder (``$EVA9_RESULTS_URL`` overrides it, e.g. for a mirror)."""
    return os.environ.get(ENV_RESULTS_URL, "").strip().rstrip("/") or RESULTS_URL


def cache_dir() -> Path:
    """Where downloaded weights are kept: torch's hub cache, ``<hub dir>/checkpoints`` (torchvision's place)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def _records_cache() -> Path:
    return cache_dir().parent / "eva9-results"


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------------ records


def _local_record_paths(directory: Path) -> list[Path]:
    return sorted(path for path in directory.glob("*.json") if path.name != INDEX_FILE)


def _download(url: str, destination: Path, sha256: str | None, what: str) -> Path:
    """Fetch ``url`` into ``destination`` through a temporary file; keep it only if its SHA-256 is ``sha256``."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.partial")
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as out:
            out.write(response.read())
        if sha256 is not None and sha256_of(partial) != sha256:
            raise WeightsError(f"{what} downloaded from {url} does not have the SHA-256 {sha256}; it was deleted")
        os.replace(partial, destination)
    except (urllib.error.URLError, OSError) as error:
        raise WeightsError(f"could not download {what} from {url} ({error})") from None
    finally:
        partial.unlink(missing_ok=True)
    return destination


_INDEX_FETCHED: dict[str, Path] = {}


def _remote_record_paths() -> list[Path]:
    """The records listed in the repository's index, each downloaded once into the cache and hash-checked."""
    cache = _records_cache()
    index_path = cache / INDEX_FILE
    url = f"{results_url()}/{INDEX_FILE}"
    if _INDEX_FETCHED.get(url) != index_path:  # once per process: new runs are published rarely
        try:
            _download(url, index_path, None, "the list of recorded runs")
            _INDEX_FETCHED[url] = index_path
        except WeightsError:
            if not index_path.is_file():
                raise
            # Offline: the list fetched last time still names files that are in the cache.
    listing = json.loads(index_path.read_text(encoding="utf-8"))
    paths = []
    for entry in listing["records"]:
        path = cache / entry["sha256"][:8] / entry["file"]  # the record's own name, one folder per version
        if not (path.is_file() and sha256_of(path) == entry["sha256"]):
            _download(f"{results_url()}/{entry['file']}", path, entry["sha256"], f"the record {entry['file']}")
        paths.append(path)
    return paths


def record_paths(directory: str | os.PathLike | None = None) -> list[Path]:
    """Local paths of every recorded run's JSON in ``directory`` ([] if it is no folder); without one, the results
    folder's, or (where there is none) downloaded copies."""
    if directory is not None:
        return _local_record_paths(Path(directory)) if Path(directory).is_dir() else []
    directory = results_dir()
    return _local_record_paths(directory) if directory is not None else _remote_record_paths()


# ------------------------------------------------------------------------------------------------------ registry


@dataclass(frozen=True)
class Weights:
    """One published set of weights: its name, file, SHA-256, download URL and what the run that made it was."""

    name: str
    file: str
    sha256: str
    url: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def local_path(self) -> Path | None:
        """The file in the results folder or the hub cache, if it is there (not yet verified)."""
        directory = results_dir()
        for folder in ([directory / "weights"] if directory is not None else []) + [cache_dir()]:
            if (folder / self.file).is_file():
                return folder / self.file
        return None

    def describe(self) -> str:
        """One short line: name, profile, epochs, device, test accuracy."""
        meta = self.meta
        accuracy = meta.get("final_test_acc")
        accuracy = "?" if accuracy is None else f"{100 * accuracy:.2f}%"
        return (
            f"'{self.name}' ({meta.get('profile', '?')} profile, {meta.get('epochs', '?')} epochs on "
            f"{meta.get('device', '?')}, {accuracy} test accuracy)"
        )


def _entry(name: str, record: dict) -> Weights | None:
    weights = record.get("weights")
    if not weights:
        return None
    config = record.get("config", {})
    model = config.get("model", "resnet18")
    schedule = config.get("schedule", "?")
    recipe = (
        f"{model}, batch {config.get('batch_size', '?')}, SGD lr {config.get('lr', '?')} "
        f"({schedule}), weight decay {config.get('weight_decay', 0)}, "
        f"label smoothing {config.get('label_smoothing', 0)}"
    )
    return Weights(
        name=name,
        file=weights["file"],
        sha256=weights["sha256"],
        url=f"{results_url()}/weights/{weights['file']}",
        meta={
            "model": model,
            "profile": record.get("profile"),
            "recipe": recipe,
            "epochs": len(record.get("history", {}).get("epochs", [])),
            "final_test_acc": record.get("final_test_acc"),
            "test_images": record.get("test_images"),
            "class_accuracy": dict(zip(record.get("classes", []), record.get("class_accuracy", []))),
            "device": record.get("device"),
            "date": str(record.get("date", ""))[:10],
            "num_params": _PARAMETERS.get(model),
            "dtype": weights.get("dtype", "float16"),
            "note": record.get("note"),
        },
    )


def published() -> dict[str, Weights]:
    """Every published set of weights, by name (the record's file name without ``.json``); reads no weights."""
    entries = {}
    for path in record_paths():
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise WeightsError(f"{path} is not valid JSON ({error})") from None
        entry = _entry(path.stem, record)
        if entry is not None:
            entries[entry.name] = entry
    return entries


def get(name: str) -> Weights:
    """The published weights called ``name``; a WeightsError lists the names there are."""
    entries = published()
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none yet"
        raise WeightsError(f"no published weights called {name!r} (published: {known}); or pass the path of a .pt file")
    return entries[name]


def preferred() -> Weights | None:
    """The weights the book shows: ``seed`` if published, else the most accurate other; None if none.

    With a results folder only weights whose file is there (or already in the hub cache) count, so a checkout
    never reaches for the network; without one (Colab) every published entry counts and is downloaded on use.
    """
    entries = published()
    if results_dir() is not None:
        entries = {name: entry for name, entry in entries.items() if entry.local_path is not None}
    if not entries:
        return None
    if "seed" in entries:
        return entries["seed"]
    return max(entries.values(), key=lambda entry: entry.meta.get("final_test_acc") or 0.0)


# --------------------------------------------------------------------------------------------------- loading


def _by_hand(entry: Weights) -> str:
    places = ([str(results_dir() / "weights")] if results_dir() is not None else []) + [str(cache_dir())]
    return (
        f"To use a copy fetched by hand, download {entry.url} and put it in {' or '.join(places)} "
        f"(its SHA-256 must be {entry.sha256})."
    )


def _verified_file(entry: Weights, progress: bool) -> Path:
    """The entry's file, checked against its SHA-256: the results folder's, the cache's, or a fresh download."""
    import torch

    directory = results_dir()
    if directory is not None and (directory / "weights" / entry.file).is_file():
        path = directory / "weights" / entry.file
        if sha256_of(path) != entry.sha256:
            raise WeightsError(
                f"{path} does not have the SHA-256 its record gives ({entry.sha256}): the file is "
                f"damaged or not the published one, so it was not loaded. {_by_hand(entry)}"
            )
        return path
    cached = cache_dir() / entry.file
    if cached.is_file() and sha256_of(cached) != entry.sha256:
        cached.unlink()  # a damaged copy in our own cache: fetch it again
    if not cached.is_file():
        print(f"Downloading the published weights {entry.name!r} ({entry.file}) from {entry.url}", flush=True)
        cached.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(entry.url, str(cached), hash_prefix=entry.sha256, progress=progress)
        except (urllib.error.URLError, OSError, RuntimeError) as error:
            cached.unlink(missing_ok=True)
            reason = " ".join(str(error).split())
            raise WeightsError(
                f"could not get the weights {entry.name!r} ({entry.file}) from {entry.url}: {reason}. {_by_hand(entry)}"
            ) from None
    return cached


def load_state_dict(weights: str | os.PathLike | Weights, progress: bool = True) -> dict:
    """The state_dict of published weights (a name or a :class:`Weights`) or of a ``.pt`` file (a path).

    A path may also name a run folder, whose ``model.pt`` is read. Tensors come back as stored (float16 for
    published weights); ``model.load_state_dict`` copies them into a float32 model.
    """
    import torch

    if isinstance(weights, Weights):
        path = _verified_file(weights, progress)
    elif isinstance(weights, os.PathLike) or os.sep in str(weights) or str(weights).endswith((".pt", ".pth")):
        path = Path(weights).expanduser()
        if path.is_dir():
            path = path / "model.pt"
        if not path.is_file():
            raise WeightsError(f"no weights file at {path}")
    else:
        path = _verified_file(get(str(weights)), progress)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: torch raises several kinds
        raise WeightsError(
            f"{path} could not be read as a PyTorch state_dict ({' '.join(str(error).split())})"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise WeightsError(f"{path} holds no state_dict of tensors")
    return state


# ------------------------------------------------------------------------------------------------------ index


def index(directory: str | os.PathLike | None = None) -> dict:
    """The index of a results folder: each record's file name and SHA-256 (what :func:`write_index` writes)."""
    directory = Path(directory) if directory is not None else results_dir()
    if directory is None:
        raise WeightsError("no results folder here to index")
    return {"records": [{"file": path.name, "sha256": sha256_of(path)} for path in _local_record_paths(directory)]}


def write_index(directory: str | os.PathLike | None = None) -> Path:
    """Write ``index.json`` of a results folder (default: the checkout's); return its path."""
    directory = Path(directory) if directory is not None else results_dir()
    path = Path(directory) / INDEX_FILE
    path.write_text(json.dumps(index(directory), indent=2) + "\n", encoding="utf-8")
    return path
