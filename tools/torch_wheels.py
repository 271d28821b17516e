"""PyTorch for the virtual environment: the CPU-only build where no CUDA GPU is present, else the default wheels.

``python tools/torch_wheels.py`` (``make setup`` runs it with the new environment's python, before
``requirements.txt``) installs ``torch`` and ``torchvision`` into the running interpreter's environment:

- with a CUDA GPU (``nvidia-smi -L`` lists one), nothing here: ``requirements.txt`` then brings PyPI's default
  wheels, which carry the CUDA libraries;
- without one, from PyTorch's CPU-only index (``--index``, default https://download.pytorch.org/whl/cpu) when that
  index answers within ``--timeout`` seconds, so that NVIDIA's CUDA libraries and Triton (about 4 GB) are never
  installed; pip keeps that torch when it installs ``requirements.txt``, which it satisfies;
- when the index does not answer, or that install fails, nothing here: the default wheels follow from PyPI.

It prints one line saying which it did. A torch already in the environment is kept as it is.
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PACKAGES = ("torch", "torchvision")


def cuda_gpu_present() -> bool:
    """Whether ``nvidia-smi -L`` is on PATH and lists at least one GPU."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return listed.returncode == 0 and "GPU" in listed.stdout


def index_reachable(index: str, timeout: float) -> bool:
    """Whether the package index answers for torch (its ``/torch/`` page) within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(f"{index.rstrip('/')}/torch/", timeout=timeout) as response:
            return 200 <= response.status < 400
    except (urllib.error.URLError, OSError, ValueError):
        return False


def torch_installed() -> bool:
    """Whether this environment already has torch."""
    return importlib.util.find_spec("torch") is not None


def install(index: str, timeout: float, pip: list[str]) -> str:
    """Install the CPU-only torch from ``index`` if it fits (see the module's docstring); return what was done."""
    if torch_installed():
        return "PyTorch is already installed in this environment: kept as it is"
    if cuda_gpu_present():
        return "CUDA GPU found (nvidia-smi): PyTorch's default wheels, with CUDA, come from PyPI"
    if not index_reachable(index, timeout):
        return (
            f"No CUDA GPU, but PyTorch's CPU-only index {index} is unreachable: falling back to the default wheels "
            "from PyPI (with the CUDA libraries, about 4 GB more)"
        )
    command = [*pip, "install", *PACKAGES, "--index-url", index]
    print("No CUDA GPU:", " ".join(command), flush=True)
    if subprocess.run(command).returncode != 0:
        return f"Installing from {index} failed: falling back to the default wheels from PyPI (with CUDA)"
    return f"No CUDA GPU: installed PyTorch's CPU-only build from {index}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", default=CPU_INDEX, help="PyTorch's CPU-only package index")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the index to answer")
    parser.add_argument("--pip", help="the pip command (default: this python's, python -m pip)")
    args = parser.parse_args(argv)
    pip = shlex.split(args.pip) if args.pip else [sys.executable, "-m", "pip"]
    print(f"torch_wheels: {install(args.index, args.timeout, pip)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
