"""CIFAR-10's fixed facts: the class names and the channel statistics every pipeline normalises with.

The lowest layer of the package (no eva9 imports), so that data, transforms, the engine and the analysis can all
use them; ``eva9.data`` and ``eva9.analysis`` re-export them under the same names.
"""

from __future__ import annotations

__all__ = ["CLASSES", "SHORT_NAMES", "MEAN", "STD", "IMAGE_FORMATS"]

CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
"""The ten classes in CIFAR-10 label order."""

SHORT_NAMES: tuple[str, ...] = ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
"""The seed notebook's short class names, in CIFAR-10 label order."""

MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
"""Per-channel mean of the official CIFAR-10 training images, pixel values in [0, 1]."""

STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)
"""Per-channel standard deviation over all training pixels (not the widely copied 0.2023, 0.1994, 0.2010)."""

IMAGE_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
"""The only formats eva9 decodes (Pillow's names, passed as ``Image.open(..., formats=IMAGE_FORMATS)``): never
EPS or PostScript, which Pillow hands to Ghostscript, nor the rarer formats whose decoders see little use."""
