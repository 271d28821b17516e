"""Any photo as the network sees it: centre-cropped to a square, shrunk to 32×32, normalized like CIFAR-10.

The network was trained on 32×32 images only, so a photo has to be brought down to that size before it can be
classified or explained: :func:`load_photo` crops the largest centred square and resizes it with Lanczos
filtering (which averages away detail rather than aliasing it), and :func:`photo_batch` normalizes a list of them
with the test transforms.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .transforms import test_transforms

__all__ = ["SIZE", "load_photo", "photo_batch"]

SIZE = 32
"""The side of the images the network was trained on."""


def _eight_bit(image: Image.Image) -> Image.Image:
    """``image`` with 8 bits per channel: 16-bit (``I;16*``), 32-bit integer (``I``) and float (``F``) images are
    scaled, not clipped, so that the same photo at 8 and at 16 bits looks the same.

    16-bit and 32-bit integers are read as 16-bit values (what PNG and TIFF store; 65535 is white); floats as
    fractions in [0, 1] when they lie there, else like integers.
    """
    if image.mode not in ("I", "F") and not image.mode.startswith("I;16"):
        return image
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F" and values.size and np.nanmax(values) <= 1.0:
        values = values * 255.0
    else:
        values = values / 257.0  # 65535 / 257 = 255
    return Image.fromarray(np.clip(np.rint(np.nan_to_num(values)), 0, 255).astype(np.uint8), mode="L")


def _array_image(photo: np.ndarray) -> Image.Image:
    if photo.dtype == np.uint16:
        photo = np.rint(photo / 257.0).astype(np.uint8)
    elif photo.dtype.kind == "f":
        photo = np.clip(np.rint(photo * 255.0 if photo.size and photo.max() <= 1.0 else photo), 0, 255).astype(np.uint8)
    return Image.fromarray(photo)


def load_photo(photo: str | os.PathLike | np.ndarray | Image.Image, size: int = SIZE) -> np.ndarray:
    """A photo as a size×size×3 uint8 RGB array: its centred square, resized.

    ``photo`` is a file path, a PIL image in any mode (16-bit, 32-bit and float images are scaled to 8 bits), or an
    H×W×3 (or H×W) uint8, uint16 or float array. Raises FileNotFoundError for a missing file, IsADirectoryError
    for a folder, and ValueError for a file that is not an image.
    """
    if isinstance(photo, np.ndarray):
        image = _array_image(photo).convert("RGB")
    elif isinstance(photo, Image.Image):
        image = _eight_bit(photo).convert("RGB")
    else:
        if os.path.isdir(photo):
            raise IsADirectoryError(f"{photo} is a directory, not an image file; give the photos inside it")
        if not os.path.isfile(photo):
            raise FileNotFoundError(f"no image file at {photo}")
        try:
            with Image.open(photo) as opened:
                image = _eight_bit(ImageOps.exif_transpose(opened)).convert("RGB")  # phones store the rotation apart
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"{photo} is not an image that Pillow can read ({error})") from None
    square = ImageOps.fit(image, (size, size), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    return np.asarray(square, dtype=np.uint8).copy()


def photo_batch(photos: Sequence[str | os.PathLike | np.ndarray | Image.Image], size: int = SIZE) -> torch.Tensor:
    """Photos (paths, PIL images or arrays, see :func:`load_photo`) as one normalized B×3×size×size tensor."""
    if len(photos) == 0:
        raise ValueError("give at least one image")
    normalize = test_transforms()
    return torch.stack([normalize(image=load_photo(photo, size))["image"] for photo in photos])
