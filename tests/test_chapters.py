"""The chapters explain and call eva9: no code cell of any chapter defines a function or class longer than two lines
(the logic belongs in the package, with a test)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
CHAPTERS = sorted(BOOK.glob("*.ipynb"))
MAX_LINES = 2


def long_definitions(source: str) -> list[str]:
    """``name (n lines)`` for each function or class in ``source`` longer than MAX_LINES (IPython magics dropped)."""
    lines = source.splitlines()
    python = "\n".join(
        line[: len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!")) else line
        for line in lines
    )
    found = []
    for node in ast.walk(ast.parse(python)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            lines = node.end_lineno - min([node.lineno, *(d.lineno for d in node.decorator_list)]) + 1
            if lines > MAX_LINES:
                found.append(f"{node.name} ({lines} lines)")
    return found


def test_the_check_finds_a_three_line_function_and_allows_a_two_line_one():
    assert long_definitions("def f(x):\n    y = x\n    return y\n") == ["f (3 lines)"]
    assert long_definitions("class A:\n    x = 1\n    y = 2\n") == ["A (3 lines)"]
    assert long_definitions("%matplotlib inline\ndef f(x):\n    return x\n") == []


def test_every_chapter_is_checked():
    assert {path.stem for path in CHAPTERS} >= {"intro", "data", "augmentations", "resnet18", "training", "gradcam"}


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda path: path.stem)
def test_no_chapter_code_cell_defines_a_function_or_class_longer_than_two_lines(chapter):
    cells = json.loads(chapter.read_text(encoding="utf-8"))["cells"]
    found = [
        f"cell {i}: {name}"
        for i, cell in enumerate(cells)
        if cell["cell_type"] == "code"
        for name in long_definitions("".join(cell["source"]))
    ]
    assert not found, f"{chapter.name} defines logic that belongs in eva9: {found}"
