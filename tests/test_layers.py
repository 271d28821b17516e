"""The package's shape: no module longer than MAX_MODULE_LINES, and every module placed in a layer of the
import-linter contract in pyproject.toml (which `make imports` checks) and drawn in README.md's picture."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "eva9"
MAX_MODULE_LINES = 450
"""The longest a module may be: past it, a module holds more than one idea and is split (one module per idea)."""


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", modules(), ids=lambda path: str(path.relative_to(REPO)))
def test_no_module_is_longer_than_450_lines(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(REPO)} has {lines} lines; split it by idea"


def test_every_top_level_module_is_in_a_layer_and_in_the_readme_drawing():
    if sys.version_info < (3, 11):
        pytest.skip("tomllib is Python 3.11's")
    import tomllib

    contracts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    layers = next(c for c in contracts["contracts"] if c["id"] == "layers")["layers"]
    placed = {name.strip() for layer in layers for name in layer.split("|")}
    top = {path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    top |= {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()}
    assert top == placed
    drawing = re.search(r"```text\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.DOTALL)
    drawn = [line.split("  ")[0].strip() for line in drawing.group(1).splitlines() if line.strip()]
    assert drawn == [layer.replace(" ", "").replace("|", " | ") for layer in layers]
