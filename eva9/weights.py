"""Published weights: which trained networks exist, what each one is, and where its verified file comes from.

The list is a manifest shipped inside the package (:data:`MANIFEST`, ``eva9/published.json``), written by the
publishing code (:func:`eva9.results.write_manifest`) from the recorded runs: for each set of weights its name, file
name, full SHA-256, URL and metadata (profile, recipe, data, epochs, accuracy, parameter count). Listing and loading
weights therefore needs no network and no ``results/`` folder; this module reads only the manifest, never the
recorded-run JSON (:mod:`eva9.results` owns that).

Where a file is looked for, in this order (a damaged copy in one place does not hide a good copy in the next):

1. the checkout's ``results/weights/`` (``$EVA9_RESULTS_DIR/weights`` when that is set);
2. ``$EVA9_WEIGHTS_DIR``, if set: a folder of copies fetched by hand;
3. torch's hub cache (``torch.hub.get_dir()/checkpoints``, under ``$TORCH_HOME``), where downloads are kept;
4. a download from the repository (the manifest's URL, or ``$EVA9_RESULTS_URL/weights/<file>``) into the hub cache.

Every file is checked against its full SHA-256 before it is loaded; a file that does not match is never loaded,
and a bad download is never kept. A symbolic link is followed and its target read, never written or deleted: one
whose target does not match is skipped like any damaged copy (and one in the hub cache is not replaced by a
download). File names from the manifest are accepted only as plain names, so nothing is
ever read, written or deleted outside those folders.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .files import DownloadError, UnsafeNameError, WriteError, check_sha256, download, plain_name

__all__ = [
    "REPOSITORY",
    "BRANCH",
    "RESULTS_URL",
    "MANIFEST",
    "WeightsError",
    "Weights",
    "results_dir",
    "results_url",
    "weights_dirs",
    "cache_dir",
    "sha256_of",
    "manifest",
    "published",
    "get",
    "preferred",
    "load_state_dict",
    "check_finite",
    "unreadable",
]

REPOSITORY = "eva9-course/eva9"
"""The GitHub repository (owner/name) that publishes the package, the book, the records and the weights."""

BRANCH = "main"
"""The branch whose ``results/`` folder is published."""

RESULTS_URL = f"https://raw.githubusercontent.com/{REPOSITORY}/{BRANCH}/results"
"""Where the published records and weights are downloaded from when there is no checkout."""

MANIFEST = Path(__file__).resolve().with_name("published.json")
"""The manifest of the published weights, shipped with the package (written by ``eva9.results.write_manifest``)."""

MAX_WEIGHTS_BYTES = 512 * 2**20
"""The most a downloaded weights file may be when the manifest gives no size (a float16 ResNet34 is ~43 MB)."""

ENV_RESULTS_DIR = "EVA9_RESULTS_DIR"
ENV_RESULTS_URL = "EVA9_RESULTS_URL"
ENV_WEIGHTS_DIR = "EVA9_WEIGHTS_DIR"

_CHECKOUT_RESULTS = Path(__file__).resolve().parents[1] / "results"


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


def weights_dirs() -> list[Path]:
    """The folders searched for a weights file, in order: results/weights, $EVA9_WEIGHTS_DIR, the hub cache."""
    folders = []
    directory = results_dir()
    if directory is not None:
        folders.append(directory / "weights")
    by_hand = os.environ.get(ENV_WEIGHTS_DIR, "").strip()
    if by_hand:
        folders.append(Path(by_hand).expanduser())
    return [*folders, cache_dir()]


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------------ registry


@dataclass(frozen=True)
class Weights:
    """One published set of weights: its name, file, SHA-256, download URL and what the run that made it was."""

    name: str
    file: str
    sha256: str
    url: str
    size: int | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def local_path(self) -> Path | None:
        """The first copy in :func:`weights_dirs`, if there is one (not yet verified)."""
        for folder in weights_dirs():
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


def _entry(raw: Any, source: Path) -> Weights:
    if not isinstance(raw, dict) or not isinstance(raw.get("meta", {}), dict):
        raise WeightsError(f"{source}: each entry must be an object with name, file, sha256, url and meta")
    try:
        name = plain_name(raw.get("name"), "weights name")
        file = plain_name(raw.get("file"), "weights file name")
        sha256 = check_sha256(raw.get("sha256"))
    except UnsafeNameError as error:
        raise WeightsError(f"{source}: {error}. Reinstall eva9, or re-publish with eva9.results") from None
    size = raw.get("size")
    url = f"{results_url()}/weights/{file}" if os.environ.get(ENV_RESULTS_URL, "").strip() else raw.get("url")
    if not isinstance(url, str) or not isinstance(size, (int, type(None))):
        raise WeightsError(f"{source}: the entry {name!r} needs a URL and an integer size")
    return Weights(name, file, sha256, url, size, dict(raw.get("meta", {})))


def manifest(path: str | os.PathLike | None = None) -> list[Weights]:
    """The entries of a manifest (default :data:`MANIFEST`), validated; [] where the file does not exist."""
    path = Path(path) if path is not None else MANIFEST
    if not path.is_file():
        return []
    try:
        listing = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise WeightsError(f"cannot read the weights manifest {path} ({error}); reinstall eva9") from None
    if not isinstance(listing, dict) or not isinstance(listing.get("weights"), list):
        raise WeightsError(f"{path} is no weights manifest (an object with a list 'weights'); reinstall eva9")
    return [_entry(raw, path) for raw in listing["weights"]]


def published() -> dict[str, Weights]:
    """Every published set of weights, by name, from the shipped manifest; reads no weights and no network."""
    return {entry.name: entry for entry in manifest()}


def get(name: str) -> Weights:
    """The published weights called ``name``; a WeightsError lists the names there are."""
    entries = published()
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none yet"
        raise WeightsError(f"no published weights called {name!r} (published: {known}); or pass the path of a .pt file")
    return entries[name]


def preferred() -> Weights | None:
    """The weights the book shows: ``seed`` if published, else the most accurate other; None if none.

    With a results folder only weights whose file is at hand (:func:`weights_dirs`) count, so a checkout never
    reaches for the network; without one (a pip install, Colab) every entry counts and is downloaded on use.
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
    places = " or ".join(str(folder) for folder in weights_dirs())
    return f"Download {entry.url} by hand and put it in {places} (its SHA-256 must be {entry.sha256})."


def _shown(path: Path) -> str:
    """``path``, and where it leads when it is a symbolic link."""
    return f"{path} (a link to {os.readlink(path)})" if path.is_symlink() else str(path)


def _verified_file(entry: Weights) -> Path:
    """The first copy of the entry's file whose SHA-256 matches, else a fresh download into the hub cache.

    A copy may be a symbolic link (to a shared folder, say): its target is read, never written. A copy that does
    not match, or cannot be read, is skipped and left as it is, and the search goes on in the next folder.
    """
    damaged = []
    for folder in weights_dirs():
        path = folder / entry.file  # a plain name (checked in the manifest): nothing outside the folder is named
        try:
            if not path.is_file():  # missing, a folder, or a link that leads nowhere
                continue
            if sha256_of(path) == entry.sha256:
                return path
            damaged.append(f"{_shown(path)} did not have its SHA-256 and was not loaded")
        except OSError as error:
            damaged.append(f"{_shown(path)} could not be read ({error.strerror or error})")
    note = f" ({'; '.join(damaged)})" if damaged else ""
    cached = cache_dir() / entry.file
    if cached.is_symlink():  # a link of the user's: never replaced by a download
        raise WeightsError(
            f"could not get the weights {entry.name!r}{note}: {cached} is a link, left as it is; remove it to "
            f"download a fresh copy. {_by_hand(entry)}"
        )
    print(f"Downloading the published weights {entry.name!r} ({entry.file}) from {entry.url}", flush=True)
    try:
        return download(
            entry.url, cache_dir(), entry.file, max_bytes=entry.size or MAX_WEIGHTS_BYTES, sha256=entry.sha256
        )
    except (DownloadError, WriteError, UnsafeNameError) as error:
        raise WeightsError(f"could not get the weights {entry.name!r}{note}: {error}. {_by_hand(entry)}") from None


def load_state_dict(weights: str | os.PathLike | Weights, progress: bool = True) -> dict:
    """The state_dict of published weights (a name or a :class:`Weights`) or of a ``.pt`` file (a path).

    A path may also name a run folder, whose ``model.pt`` is read. Tensors come back as stored (float16 for
    published weights); ``model.load_state_dict`` copies them into a float32 model. ``progress`` is accepted for
    torchvision's signature; a download prints one line.
    """
    import torch

    if isinstance(weights, Weights):
        path = _verified_file(weights)
    elif isinstance(weights, os.PathLike) or os.sep in str(weights) or str(weights).endswith((".pt", ".pth")):
        path = Path(weights).expanduser()
        if path.is_dir():
            path = path / "model.pt"
        if not path.is_file():
            raise WeightsError(f"no weights file at {path}")
    else:
        path = _verified_file(get(str(weights)))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: torch raises several kinds
        raise WeightsError(f"{path} could not be read as a PyTorch state_dict ({unreadable(path, error)})") from None
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise WeightsError(f"{path} holds no state_dict of tensors")
    return check_finite(state, path)


def unreadable(path: str | os.PathLike, error: BaseException) -> str:
    """Why ``torch.load`` could not read ``path``, in a few words, saying so when the file is empty or cut short
    (torch's own message for those is empty, or about zip records)."""
    try:
        size = os.path.getsize(path)
    except OSError as missing:
        return (missing.strerror or "cannot be opened").lower()
    if size == 0:
        return "the file is empty: its write was cut short, or it was replaced by an empty file"
    reason = " ".join(str(error).split())[:200] or type(error).__name__
    return f"the file ({size:,} bytes) is damaged or cut short, or no PyTorch file: {reason}"


def check_finite(state: dict, source: str | os.PathLike) -> dict:
    """``state`` if every floating-point tensor in it is finite; else WeightsError naming ``source`` (the weights of
    a diverged run, whose every prediction would be NaN)."""
    import torch

    bad = [
        key for key, value in state.items() if isinstance(value, torch.Tensor) and value.is_floating_point()
        and not bool(torch.isfinite(value).all())
    ]  # fmt: skip
    if bad:
        more = f" and {len(bad) - 1} more tensor(s)" if len(bad) > 1 else ""
        raise WeightsError(
            f"refused the weights {source}: {bad[0]}{more} {'hold' if more else 'holds'} NaN or infinite values (a "
            "diverged run), so every prediction would be NaN. Retrain (a lower learning rate), or use other weights"
        )
    return state
