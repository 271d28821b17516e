"""Any photo as the network sees it: centre-cropped to a square, shrunk to 32×32, normalized like CIFAR-10.

The network was trained on 32×32 images only, so a photo has to be brought down to that size before it can be
classified or explained: :func:`load_photo` crops the largest centred square and resizes it with Lanczos
filtering (which averages away detail rather than aliasing it), and :func:`photo_batch` normalizes a list of them
with the test transforms. :func:`read_photo` is the one reader of photo files (the CLI, the app and the book use
it): only JPEG, PNG, WebP, GIF, BMP and TIFF are decoded, and any bit depth is scaled to 8 bits.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .constants import IMAGE_FORMATS
from .transforms import test_transforms

__all__ = ["SIZE", "IMAGE_FORMATS", "PhotoError", "read_photo", "load_photo", "photo_batch"]

SIZE = 32
"""The side of the images the network was trained on."""

FORMAT_NAMES = ("JPEG", "PNG", "WebP", "GIF", "BMP", "TIFF")
""":data:`~eva9.constants.IMAGE_FORMATS` as people write them."""


class PhotoError(ValueError):
    """A photo file that cannot be read: empty, not an image in an accepted format, cut short or too large."""


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


def read_photo(path: str | os.PathLike, *, name: str | None = None, max_pixels: int | None = None) -> Image.Image:
    """The photo file at ``path`` as an 8-bit RGB image, upright (phones store the rotation apart).

    The one reader of photo files for the CLI, the app, the book and :func:`photo_batch`. Only
    :data:`~eva9.constants.IMAGE_FORMATS` are decoded (never EPS or PostScript, which Pillow would hand to
    Ghostscript); 16-bit, 32-bit and float images are scaled to 8 bits. ``name`` is how messages name the file
    (default: the path); ``max_pixels`` refuses larger images before decoding them. Raises FileNotFoundError,
    IsADirectoryError, or :class:`PhotoError` (one line) for a file that is empty, not an image in those formats,
    cut short or too large.
    """
    shown = str(path) if name is None else name
    if os.path.isdir(path):
        raise IsADirectoryError(f"{shown} is a directory, not an image file; give the photos inside it")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no image file at {shown}")
    if os.path.getsize(path) == 0:
        raise PhotoError(f"{shown} is empty: choose a photo ({', '.join(FORMAT_NAMES)})")
    limit = f"{max_pixels / 1e6:g} megapixels" if max_pixels else "the pixels Pillow decodes"
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as opened:
            width, height = opened.size
            if max_pixels is not None and width * height > max_pixels:
                raise PhotoError(
                    f"{shown} is {width}×{height} pixels, more than the {limit} eva9 decodes; the network sees "
                    "32×32 anyway, so shrink it first"
                )
            return _eight_bit(ImageOps.exif_transpose(opened)).convert("RGB")
    except Image.DecompressionBombError:  # so many pixels that Pillow refuses to open it
        raise PhotoError(f"{shown} has far more than {limit}; shrink it first") from None
    except UnidentifiedImageError:
        raise PhotoError(
            f"{shown} is not an image that Pillow can read as {', '.join(FORMAT_NAMES)} (the only formats eva9 decodes)"
        ) from None
    except OSError as error:  # a truncated or broken file
        detail = " ".join(str(error).replace(str(path), shown).split())
        raise PhotoError(f"{shown} is not an image that Pillow can read ({detail})") from None


def load_photo(photo: str | os.PathLike | np.ndarray | Image.Image, size: int = SIZE) -> np.ndarray:
    """A photo as a size×size×3 uint8 RGB array: its centred square, resized.

    ``photo`` is a file path (read by :func:`read_photo`), a PIL image in any mode (16-bit, 32-bit and float images
    are scaled to 8 bits), or an H×W×3 (or H×W) uint8, uint16 or float array. Raises FileNotFoundError for a
    missing file, IsADirectoryError for a folder, and :class:`PhotoError` (a ValueError) for a file that is not an
    image.
    """
    if isinstance(photo, np.ndarray):
        image = _array_image(photo).convert("RGB")
    elif isinstance(photo, Image.Image):
        image = _eight_bit(photo).convert("RGB")
    else:
        image = read_photo(photo)
    square = ImageOps.fit(image, (size, size), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    return np.asarray(square, dtype=np.uint8).copy()


def photo_batch(photos: Sequence[str | os.PathLike | np.ndarray | Image.Image], size: int = SIZE) -> torch.Tensor:
    """Photos (paths, PIL images or arrays, see :func:`load_photo`) as one normalized B×3×size×size tensor."""
    if len(photos) == 0:
        raise ValueError("give at least one image")
    normalize = test_transforms()
    return torch.stack([normalize(image=load_photo(photo, size))["image"] for photo in photos])
