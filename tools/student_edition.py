"""The student edition: every chapter's notebook without the exercise solutions, and a zip of them for the book.

``python tools/student_edition.py [OUT]`` (``make student``) reads each chapter in ``_toc.yml`` order from its paired
notebook ``book/<name>.ipynb``, removes every ``{solution}`` block (backtick or colon fenced, or a
``{solution-start}`` … ``{solution-end}`` pair) and every cell output, and writes ``OUT/<name>.ipynb`` (default
``_build/student``) and ``OUT/eva9-student.zip`` holding them all, which the intro links as a download. The
exercises stay, each followed by a line saying where its solution is. Nothing outside ``OUT`` is written.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
ZIP_NAME = "eva9-student.zip"
REMOVED = "*(The solution is in the full edition of the book.)*"

_OPENING = re.compile(r"^(?P<fence>`{3,}|:{3,})\{solution\}")
_START, _END = re.compile(r"^(`{3,}|:{3,})\{solution-start\}"), re.compile(r"^(`{3,}|:{3,})\{solution-end\}")


def without_solutions(markdown: str) -> tuple[str, int]:
    """``markdown`` with each solution block replaced by one line saying so, and the number of blocks removed."""
    lines, kept, removed, i = markdown.split("\n"), [], 0, 0
    while i < len(lines):
        opening, start = _OPENING.match(lines[i]), _START.match(lines[i])
        if not (opening or start):
            kept.append(lines[i])
            i += 1
            continue
        first, i = i + 1, i + 1
        if opening:  # the block ends at the first line that is its opening fence alone
            while i < len(lines) and lines[i].rstrip() != opening["fence"]:
                i += 1
        else:  # everything up to {solution-end}, whose own block ends at the next line that is its fence alone
            while i < len(lines) and not _END.match(lines[i]):
                i += 1
            end = _END.match(lines[i]).group(1) if i < len(lines) else None
            i += 1
            while i < len(lines) and lines[i].rstrip() != end:
                i += 1
        if i >= len(lines):
            raise ValueError(f"the solution opened on line {first} is never closed")
        i += 1
        kept.append(REMOVED)
        removed += 1
    return "\n".join(kept), removed


def student_notebook(notebook: dict) -> tuple[dict, int]:
    """A copy of ``notebook`` without solutions or outputs, and the number of solutions removed."""
    notebook, removed = copy.deepcopy(notebook), 0
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            text, count = without_solutions("".join(cell["source"]))
            cell["source"], removed = text.splitlines(keepends=True), removed + count
        elif cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return notebook, removed


def chapters(toc: Path = ROOT / "_toc.yml") -> list[Path]:
    """The chapters' paired notebooks in the order of ``_toc.yml`` (those under book/)."""
    names = re.findall(r"(?:root|file):\s*book/(\S+)", toc.read_text(encoding="utf-8"))
    return [BOOK / f"{name}.ipynb" for name in names]


def write_edition(out: Path, notebooks: list[Path]) -> dict[str, int]:
    """Write each student notebook and the zip into ``out``; return the solutions removed per chapter."""
    out.mkdir(parents=True, exist_ok=True)
    removed, written = {}, []
    for path in notebooks:
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run `jupytext --to ipynb --update book/*.md` first")
        notebook, removed[path.stem] = student_notebook(json.loads(path.read_text(encoding="utf-8")))
        target = out / path.name
        target.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(target)
    partial = out / (ZIP_NAME + ".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for target in written:
            archive.write(target, f"eva9-student/{target.name}")
    partial.replace(out / ZIP_NAME)  # the zip appears whole or not at all
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=ROOT / "_build" / "student")
    args = parser.parse_args(argv)
    removed = write_edition(args.out, chapters())
    solutions = sum(removed.values())
    print(f"student edition: {len(removed)} chapters, {solutions} solutions removed → {args.out / ZIP_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
