"""The student edition (tools/student_edition.py, ``make student``): every chapter's notebook with its exercises but
none of their solutions and no outputs, and a zip of them; written into a temporary folder here."""

from __future__ import annotations

import importlib.util
import json
import re
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("student_edition", ROOT / "tools" / "student_edition.py")
student_edition = importlib.util.module_from_spec(spec)
spec.loader.exec_module(student_edition)


def solution_lines(markdown: str) -> tuple[list[str], set[str]]:
    """The non-blank lines inside each ``{solution}`` block of ``markdown``, found by its fence (the test's own
    reading, independent of the tool's), and the set of lines outside them."""
    found, outside, fence = [], set(), None
    for line in markdown.splitlines():
        if fence is None:
            match = re.match(r"^(`{3,}|:{3,})\{solution\}", line)
            fence = match.group(1) if match else None
            outside.add(line.strip())
        elif line.rstrip() == fence:
            fence = None
        elif line.strip() and not line.startswith(":class:") and not re.fullmatch(r"`{3,}\w*", line.strip()):
            found.append(line.strip())
    return found, outside


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    removed = student_edition.write_edition(out, student_edition.chapters())
    return out, removed


def test_every_chapter_of_the_toc_is_in_the_edition_and_its_zip(edition):
    out, _ = edition
    names = {path.name for path in student_edition.chapters()}
    assert {"intro.ipynb", "gradcam.ipynb", "results.ipynb"} <= names
    assert {path.name for path in out.glob("*.ipynb")} == names
    with zipfile.ZipFile(out / student_edition.ZIP_NAME) as archive:
        assert sorted(archive.namelist()) == sorted(f"eva9-student/{name}" for name in names)
        assert archive.read("eva9-student/intro.ipynb") == (out / "intro.ipynb").read_bytes()


def test_no_solution_text_survives_and_every_exercise_stays(edition):
    out, removed = edition
    for source in sorted((ROOT / "book").glob("*.md")):
        full = source.read_text(encoding="utf-8")
        student = (out / f"{source.stem}.ipynb").read_text(encoding="utf-8")
        text = "".join("".join(cell["source"]) for cell in json.loads(student)["cells"])
        solutions = re.findall(r"^(?:`{3,}|:{3,})\{solution\}", full, flags=re.M)
        assert removed[source.stem] == len(solutions) > 0, f"{source.name}: not every solution was removed"
        assert "{solution" not in text and text.count(student_edition.REMOVED) == len(solutions)
        inside, outside = solution_lines(full)
        distinctive = [line for line in inside if len(line) > 25 and line not in outside]
        student_lines = {line.strip() for line in text.splitlines()}
        survivors = [line for line in distinctive if line in student_lines]
        assert distinctive and not survivors, f"{source.name}: solution text survives: {survivors[:3]}"
        exercises = re.findall(r"^(?:`{3,}|:{3,})\{exercise\}\s*(.*)$", full, flags=re.M)
        assert exercises and all(title in text for title in exercises), f"{source.name} lost an exercise"


def test_the_notebooks_have_no_outputs(edition):
    out, _ = edition
    for path in out.glob("*.ipynb"):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            assert cell["cell_type"] != "code" or (cell["outputs"] == [] and cell["execution_count"] is None)


def test_a_solution_block_is_removed_whatever_its_fence_and_the_text_around_it_stays():
    markdown = "\n".join(
        [
            "before",
            "````{solution} a",
            ":class: dropdown",
            "```python",
            "print('answer a')",
            "```",
            "````",
            "between",
            ":::{solution} b",
            "answer b",
            ":::",
            "```{solution-start} c",
            "```",
            "answer c",
            "```{solution-end}",
            "```",
            "after",
        ]
    )
    text, removed = student_edition.without_solutions(markdown)
    assert removed == 3
    removed_line = student_edition.REMOVED
    assert text.split("\n") == ["before", removed_line, "between", removed_line, removed_line, "after"]


def test_an_unclosed_solution_is_an_error_not_a_truncated_chapter():
    with pytest.raises(ValueError, match="never closed"):
        student_edition.without_solutions("text\n````{solution} a\nanswer\n")
