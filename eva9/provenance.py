"""Where and when a measurement was made: the machine, the package versions, the date.

A low-level module (no eva9 imports): the engine records ``versions()`` and the device in ``metrics.json``, the
benchmarks and recorded runs record ``provenance()``; ``eva9.results`` re-exports all three.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
from importlib import metadata
from typing import Any

__all__ = ["versions", "machine", "provenance"]


def versions() -> dict[str, str | None]:
    """Versions of Python and the packages a result depends on (None where a package is not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("torch", "torchvision", "albumentations", "numpy", "eva9", "grad-cam"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as lines:
            for line in lines:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The computer a measurement ran on: CPU model, logical cores, OS, and the GPU name if CUDA is available."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "gpu": None,
    }
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def provenance() -> dict[str, Any]:
    """Where and when a measurement was made: ``{"machine": ..., "versions": ..., "date": ISO-8601 UTC}``."""
    return {
        "machine": machine(),
        "versions": versions(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
