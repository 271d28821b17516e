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


def load_photo(photo: str | os.PathLike | np.ndarray | Image.Image, size: int = SIZE) -> np.ndarray:
    """A photo as a size×size×3 uint8 RGB array: its centred square, resized.

    ``photo`` is a file path, a PIL image, or an H×W×3 (or H×W) uint8 array. Raises FileNotFoundError for a missing
    file and ValueError for a file that is not an image.
    """
    if isinstance(photo, np.ndarray):
        image = Image.fromarray(photo).convert("RGB")
    elif isinstance(photo, Image.Image):
        image = photo.convert("RGB")
    else:
        if not os.path.isfile(photo):
            raise FileNotFoundError(f"no image file at {photo}")
        try:
            with Image.open(photo) as opened:
                image = ImageOps.exif_transpose(opened).convert("RGB")  # phones store the rotation separately
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
