"""Finding and reading a copy of CIFAR-10: the two local layouts, torchvision's download, and the dataset class.

Every copy ends up as a :class:`CIFAR10Dataset` holding uint8 HWC RGB images and integer labels (see
:mod:`eva9.data`); image files are decoded on first use and cached.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from ..constants import CLASSES
from .batches import MAX_FILE_BYTES, BatchError, RefusedGlobal, read_batch

__all__ = [
    "ENV_VAR",
    "DOWNLOAD_DIR",
    "CIFAR10Error",
    "CIFAR10Dataset",
    "ImageFiles",
    "dataset_root",
    "copy_kind",
    "cifar10",
]

ENV_VAR = "EVA9_DATA_DIR"
"""Environment variable naming a local CIFAR-10 copy; used when no ``root`` is given."""

DOWNLOAD_DIR = Path("data")
"""Where torchvision downloads the official archive when no local copy is named (relative to the working dir)."""

SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)

LAYOUTS_HELP = (
    "A CIFAR-10 copy is either torchvision's 'cifar-10-batches-py/' folder (data_batch_1..5, test_batch; name the "
    "folder itself or its parent) or an image-folder tree 'train/<class>/*.png|jpg' and 'test/<class>/*' with the "
    f"ten class folders {', '.join(CLASSES)}. Pass its path as root=... or set {ENV_VAR}=/path/to/cifar10; "
    "with neither, torchvision downloads the official archive into ./data (needs internet)."
)


class CIFAR10Error(FileNotFoundError, ValueError):
    """A CIFAR-10 copy is missing, cannot be downloaded, or is not laid out as expected."""


# --------------------------------------------------------------------------------------------------- image sources


def _read_image(path: Path) -> np.ndarray:
    """Decode one image file to a uint8 HWC RGB array, or raise CIFAR10Error naming the file."""
    from PIL import Image, UnidentifiedImageError

    from ..constants import IMAGE_FORMATS

    try:
        with Image.open(path, formats=IMAGE_FORMATS) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise CIFAR10Error(
            f"cannot read image file {path}: {error}. Replace or delete the file, or point at another copy. "
            + LAYOUTS_HELP
        ) from None


_DECODED: dict[Path, np.ndarray] = {}
"""Images decoded so far in this process, by path: a second cifar10() or loaders() call does not decode again."""


class ImageFiles:
    """Image files decoded on first access and cached, indexable like a uint8 N×H×W×3 array."""

    def __init__(self, paths: Sequence[Path], cache: dict[Path, np.ndarray] | None = None) -> None:
        self.paths = list(paths)
        self._cache = _DECODED if cache is None else cache

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        path = self.paths[index]
        image = self._cache.get(path)
        if image is None:
            image = self._cache[path] = _read_image(path)
        return image

    @property
    def decoded(self) -> int:
        """How many of these files have been decoded so far."""
        return sum(path in self._cache for path in self.paths)

    def take(self, indices: Sequence[int]) -> ImageFiles:
        """The files at ``indices``, sharing this object's cache; nothing is decoded."""
        return ImageFiles([self.paths[i] for i in indices], self._cache)

    def to_array(self) -> np.ndarray:
        """Decode every file (once) into one uint8 N×H×W×3 array."""
        if not self.paths:
            return np.zeros((0, 32, 32, 3), dtype=np.uint8)
        first = self[0]
        array = np.empty((len(self.paths), *first.shape), dtype=np.uint8)
        for i, path in enumerate(self.paths):
            # Decode straight into the array, and cache a view of it: never a second copy of the images in memory.
            image = self._cache.get(path)
            if image is None:
                image = _read_image(path)
            if image.shape != first.shape:
                raise CIFAR10Error(
                    f"image {path} is {image.shape[1]}×{image.shape[0]} but {self.paths[0]} is "
                    f"{first.shape[1]}×{first.shape[0]}; every image of a CIFAR-10 copy must have the same size."
                )
            array[i] = image
            self._cache[path] = array[i]
        return array


class CIFAR10Dataset(Dataset):
    """CIFAR-10 images and labels; items are (CHW float32 tensor in [0, 1], label), or the transform's output.

    ``images`` is a uint8 N×32×32×3 array or :class:`ImageFiles`; ``transform`` (reassignable) is an
    Albumentations transform called as ``transform(image=hwc_uint8)["image"]``. Besides an index, an item may be
    asked for as ``dataset[(index, seed)]`` (what :class:`EpochSampler` yields): the transform is then reseeded
    with ``seed`` first (``set_random_seed``), so the item's augmentation depends on that seed alone.
    """

    def __init__(
        self,
        images: np.ndarray | ImageFiles,
        targets: Sequence[int],
        transform: Callable[..., Any] | None = None,
        classes: Sequence[str] = CLASSES,
        root: Path | None = None,
        split: str = "train",
    ) -> None:
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} labels")
        self.images = images
        self.targets = [int(t) for t in targets]
        self.transform = transform
        self.classes = list(classes)
        self.root = root
        self.split = split

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[Any, int]:
        if isinstance(index, tuple):  # (index, augmentation seed) from EpochSampler
            index, seed = index
            reseed = getattr(self.transform, "set_random_seed", None)
            if reseed is not None:
                reseed(seed)
        image = self.images[index]
        if self.transform is None:
            return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255), self.targets[
                index
            ]
        return self.transform(image=image)["image"], self.targets[index]

    def subset(self, indices: Sequence[int]) -> CIFAR10Dataset:
        """The items at ``indices`` as a new dataset with the same transform; image files are not decoded."""
        indices = [int(i) for i in indices]
        images = self.images.take(indices) if isinstance(self.images, ImageFiles) else self.images[indices]
        return CIFAR10Dataset(
            images, [self.targets[i] for i in indices], self.transform, self.classes, self.root, self.split
        )

    def load_images(self) -> CIFAR10Dataset:
        """Decode image files (once) into one uint8 array held in memory; returns self."""
        if isinstance(self.images, ImageFiles):
            self.images = self.images.to_array()
        return self

    def uint8_images(self) -> np.ndarray:
        """All images as one uint8 N×H×W×3 array (decoding image files if needed)."""
        return self.load_images().images  # type: ignore[return-value]

    def fingerprint(self) -> str:
        """What these items are, in one line: the layout, the count, and a SHA-256 of the labels and the image
        bytes (of the file names, for image files not decoded yet); equal for the same data wherever it lies."""
        digest = hashlib.sha256(np.asarray(self.targets, dtype=np.int64).tobytes())
        if isinstance(self.images, ImageFiles):
            layout = "image files"
            for path in self.images.paths:
                digest.update("/".join(path.parts[-3:]).encode("utf-8") + b"\0")  # split/class/file
        else:
            layout = "images in memory"
            digest.update(np.ascontiguousarray(self.images).tobytes())
        return f"{self.split} {layout}, {len(self)} items, sha256 {digest.hexdigest()[:16]}"

    def __repr__(self) -> str:
        source = "image files" if isinstance(self.images, ImageFiles) else "in-memory array"
        return f"CIFAR10Dataset(split={self.split!r}, n={len(self)}, root={str(self.root)!r}, {source})"


# --------------------------------------------------------------------------------------------------- finding a copy


def dataset_root(root: str | os.PathLike | None = None) -> Path | None:
    """The local CIFAR-10 copy to use: ``root``, else ``$EVA9_DATA_DIR``, else None (download with torchvision)."""
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR, "").strip()
    return Path(env).expanduser() if env else None


def _detect_layout(root: Path) -> tuple[str, Path]:
    """("batches", folder) or ("folders", root) for a local copy, or raise CIFAR10Error."""
    if not root.exists():
        raise CIFAR10Error(f"CIFAR-10 folder {root} does not exist (resolved: {root.resolve()}). " + LAYOUTS_HELP)
    if not root.is_dir():
        raise CIFAR10Error(f"CIFAR-10 path {root} is a file, not a folder. " + LAYOUTS_HELP)
    if any((root / name).is_file() for name in TRAIN_BATCHES + TEST_BATCHES):
        return "batches", root
    if (root / "cifar-10-batches-py").is_dir():
        return "batches", root / "cifar-10-batches-py"
    if any((root / split).is_dir() for split in SPLITS):
        return "folders", root
    raise CIFAR10Error(
        f"{root} is not a CIFAR-10 copy: it holds neither 'cifar-10-batches-py/' (or data_batch_1..5) nor "
        "'train/' and 'test/' image folders. " + LAYOUTS_HELP
    )


def read_batch_file(path: Path) -> tuple[np.ndarray, list[int]]:
    """Images (uint8 N×32×32×3) and labels of one pickled batch file, read by :mod:`eva9.data.batches` (no byte of
    it reaches numpy's unpickling); CIFAR10Error naming the file if it is no CIFAR-10 batch."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_FILE_BYTES:
                raise BatchError(f"it is {size:,} bytes, more than the {MAX_FILE_BYTES:,} a batch file may be")
            data = f.read(size)  # what the file held when opened: no more, whatever it claims inside
        images, labels = read_batch(data)
    except RefusedGlobal as error:
        raise CIFAR10Error(
            f"refused the CIFAR-10 batch file {path}: {error}; nothing from it ran. Replace it with the official "
            "file, or point at another copy"
        ) from None
    except (BatchError, OSError) as error:
        reason = str(error) if isinstance(error, BatchError) else (error.strerror or str(error)).lower()
        raise CIFAR10Error(f"cannot read CIFAR-10 batch file {path}: {reason}. " + LAYOUTS_HELP) from None
    return images, labels.tolist()


def copy_kind(root: str | os.PathLike | None = None) -> str:
    """Which copy ``root`` (else ``$EVA9_DATA_DIR``) is: ``"official"`` for torchvision's download or a
    ``cifar-10-batches-py`` folder (the archive's lossless layout), ``"image-folder"`` for image folders."""
    path = dataset_root(root)
    if path is None:
        return "official"
    return "official" if _detect_layout(path)[0] == "batches" else "image-folder"


def _load_batches(folder: Path, split: str) -> tuple[np.ndarray, list[int]]:
    """Images (uint8 N×32×32×3) and labels from torchvision's pickled batches in ``folder``."""
    images: list[np.ndarray] = []
    labels: list[int] = []
    for name in TRAIN_BATCHES if split == "train" else TEST_BATCHES:
        path = folder / name
        if not path.is_file():
            raise CIFAR10Error(f"{path} is missing from the cifar-10-batches-py copy at {folder}. " + LAYOUTS_HELP)
        batch_images, batch_labels = read_batch_file(path)
        images.append(batch_images)
        labels.extend(batch_labels)
    return np.ascontiguousarray(np.concatenate(images)), labels


def _list_image_folder(root: Path, split: str) -> tuple[list[Path], list[int]]:
    """Image paths and labels of ``root/split/<class>/*``, classes in CIFAR-10 order, files sorted by name."""
    split_dir = root / split
    if not split_dir.is_dir():
        raise CIFAR10Error(
            f"{split_dir} is missing: the image-folder copy at {root} has no '{split}/' folder. " + LAYOUTS_HELP
        )
    found = {entry.name for entry in os.scandir(split_dir) if entry.is_dir() and not entry.name.startswith(".")}
    missing, extra = [c for c in CLASSES if c not in found], sorted(found - set(CLASSES))
    if missing or extra:
        problems = ([f"missing class folder(s) {', '.join(missing)}"] if missing else []) + (
            [f"unexpected folder(s) {', '.join(extra)}"] if extra else []
        )
        raise CIFAR10Error(f"{split_dir}: {'; '.join(problems)}. " + LAYOUTS_HELP)
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(CLASSES):
        files = sorted(
            entry.name
            for entry in os.scandir(split_dir / name)
            if entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES) and not entry.name.startswith(".")
        )
        if not files:
            raise CIFAR10Error(f"class folder {split_dir / name} holds no .png/.jpg images. " + LAYOUTS_HELP)
        paths.extend(split_dir / name / file for file in files)
        labels.extend([label] * len(files))
    return paths, labels


def _download(split: str, download: bool | None) -> tuple[np.ndarray, list[int]]:
    """The official archive through torchvision, in ./data; raise CIFAR10Error when it is absent and cannot come."""
    from torchvision.datasets import CIFAR10

    if download is False and not (DOWNLOAD_DIR / "cifar-10-batches-py").is_dir():
        raise CIFAR10Error(
            f"no CIFAR-10 copy named and none in {DOWNLOAD_DIR.resolve()}, and download=False. " + LAYOUTS_HELP
        )
    try:
        dataset = CIFAR10(root=str(DOWNLOAD_DIR), train=split == "train", download=download is not False)
    except Exception as error:  # noqa: BLE001 - offline machines fail in many ways (URLError, RuntimeError, ...)
        raise CIFAR10Error(
            f"could not download CIFAR-10 into {DOWNLOAD_DIR.resolve()} ({type(error).__name__}: {error}). "
            "This machine may be offline. " + LAYOUTS_HELP
        ) from None
    return np.ascontiguousarray(dataset.data), list(dataset.targets)


def cifar10(
    split: str,
    root: str | os.PathLike | None = None,
    transform: Callable[..., Any] | None = None,
    download: bool | None = None,
) -> CIFAR10Dataset:
    """The CIFAR-10 ``"train"`` or ``"test"`` split from a local copy (root or $EVA9_DATA_DIR) or torchvision.

    ``download`` only matters when no local copy is named: None or True download if needed, False never does.
    A named local copy is never downloaded to; if it is missing or malformed, CIFAR10Error says why.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    path = dataset_root(root)
    if path is None:
        images, labels = _download(split, download)
        return CIFAR10Dataset(images, labels, transform, root=DOWNLOAD_DIR, split=split)
    layout, folder = _detect_layout(path)
    if layout == "batches":
        images, labels = _load_batches(folder, split)
        return CIFAR10Dataset(images, labels, transform, root=path, split=split)
    paths, labels = _list_image_folder(folder, split)
    return CIFAR10Dataset(ImageFiles(paths), labels, transform, root=path, split=split)
