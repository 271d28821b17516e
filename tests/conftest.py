"""Shared fixtures for the eva9 tests.

* ``cifar_root`` (session): Path of the real CIFAR-10 copy named by ``EVA9_DATA_DIR``; skips the test when unset
  or missing. Tests that need real images use it; everything else uses the tiny fakes below.
* ``make_image_folder`` : factory ``make_image_folder(root=None, n_train=4, n_test=2, suffix=".png",
  classes=CLASSES) -> Path`` writing a tiny image-folder copy (``train/<class>/NNNN.png``, ``test/<class>/...``)
  under ``tmp_path``. Image ``i`` of class ``c`` is ``fake_image(c, i)``: random-looking but reproducible, so a
  test can compare what it loads with what was written. PNG is lossless; ``.jpg`` is allowed too.
* ``make_batches_folder`` : factory ``make_batches_folder(root=None, n_per_batch=10) -> Path`` writing a tiny
  torchvision ``cifar-10-batches-py/`` folder (data_batch_1..5, test_batch, batches.meta) and returning the
  ``cifar-10-batches-py`` folder; labels cycle through the ten classes; images are ``fake_image(label, index)``.
* ``tiny_folder`` : a ready-made tiny image-folder copy (4 train / 2 test images per class).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from eva9.data import CLASSES, ENV_VAR


def fake_image(label: int, index: int, size: int = 32) -> np.ndarray:
    """A reproducible uint8 HWC RGB image for (label, index), values in 1..254 (never 0 or 255)."""
    rng = np.random.default_rng(1000 * label + index)
    return rng.integers(1, 255, size=(size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def cifar_root() -> Path:
    """The real CIFAR-10 copy named by EVA9_DATA_DIR; skip when it is not available."""
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        pytest.skip(f"{ENV_VAR} is not set; point it at a CIFAR-10 copy (e.g. ../shared/cifar10) to run this test")
    path = Path(value).expanduser()
    if not path.is_dir():
        pytest.skip(f"{ENV_VAR}={value} is not a folder; point it at a CIFAR-10 copy to run this test")
    return path


@pytest.fixture
def make_image_folder(tmp_path: Path) -> Callable[..., Path]:
    """Factory writing a tiny image-folder CIFAR-10 copy; see the module docstring."""
    from PIL import Image

    def make(
        root: Path | None = None,
        n_train: int = 4,
        n_test: int = 2,
        suffix: str = ".png",
        classes: Sequence[str] = CLASSES,
    ) -> Path:
        root = Path(root) if root is not None else tmp_path / "folders"
        for split, n in (("train", n_train), ("test", n_test)):
            for label, name in enumerate(classes):
                folder = root / split / name
                folder.mkdir(parents=True, exist_ok=True)
                for i in range(n):
                    Image.fromarray(fake_image(label, i)).save(folder / f"{i:04d}{suffix}")
        return root

    return make


@pytest.fixture
def make_batches_folder(tmp_path: Path) -> Callable[..., Path]:
    """Factory writing a tiny torchvision cifar-10-batches-py folder; see the module docstring."""

    def make(root: Path | None = None, n_per_batch: int = 10) -> Path:
        folder = (Path(root) if root is not None else tmp_path / "batches") / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for b, name in enumerate(names):
            labels = [(b + i) % 10 for i in range(n_per_batch)]
            images = np.stack([fake_image(label, 100 * b + i) for i, label in enumerate(labels)])
            batch = {
                "batch_label": name,
                "labels": labels,
                "data": images.transpose(0, 3, 1, 2).reshape(n_per_batch, -1),  # rows of R, G, B planes
                "filenames": [f"{name}_{i}.png" for i in range(n_per_batch)],
            }
            with open(folder / name, "wb") as f:
                pickle.dump(batch, f)
        with open(folder / "batches.meta", "wb") as f:
            pickle.dump({"label_names": list(CLASSES), "num_cases_per_batch": n_per_batch, "num_vis": 3072}, f)
        return folder

    return make


@pytest.fixture
def tiny_folder(make_image_folder: Callable[..., Path]) -> Path:
    """A tiny image-folder copy: 4 train and 2 test PNG images per class."""
    return make_image_folder()
