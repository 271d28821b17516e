"""Where a book build's time goes: each chapter executed as the book executes it, with every cell's wall time.

python benchmarks/bench_chapters.py [CHAPTER ...] [--out DIR]

Executes ``book/<chapter>.ipynb`` (default: every chapter, in the table of contents' order) with nbclient in
``book/`` as the working directory, as the book's builds and nbval do, and records each chapter's wall seconds
and each code cell's (from nbclient's timing metadata), with the 1-minute load average before and after. The
training chapter trains into ``book/runs/<profile>`` as the book does (a finished run there is reused). A chapter
that fails is recorded with its error, and the others still run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FULL = {"chapters": None}  # None: every chapter of _toc.yml
QUICK = FULL
TINY = {"chapters": ["intro"]}


def chapters_in_order() -> list[str]:
    """The chapters of ``_toc.yml`` that are notebooks in ``book/``, in reading order."""
    names = [line.split("book/")[1].strip() for line in (ROOT / "_toc.yml").read_text().splitlines() if "book/" in line]
    return [name for name in names if (ROOT / "book" / f"{name}.ipynb").exists()]


def _seconds(cell) -> float | None:
    timing = cell.get("metadata", {}).get("execution", {})
    if "iopub.execute_input" not in timing or "shell.execute_reply" not in timing:
        return None
    start, end = (
        dt.datetime.fromisoformat(timing[key].replace("Z", "+00:00"))
        for key in ("iopub.execute_input", "shell.execute_reply")
    )
    return round((end - start).total_seconds(), 2)


def time_chapter(name: str) -> dict:
    """Execute one chapter; its wall seconds, whether it ran without error, and each code cell's seconds."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(ROOT / "book" / f"{name}.ipynb", as_version=4)
    client = NotebookClient(
        notebook, timeout=3600, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "book")}}
    )
    start, error = time.perf_counter(), None
    try:
        client.execute()
    except Exception as failure:  # noqa: BLE001 - recorded, and the other chapters still run
        error = f"{type(failure).__name__}: {str(failure)[:300]}"
    cells = [
        {"cell": i, "seconds": _seconds(cell), "source": cell.source[:80]}
        for i, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and _seconds(cell) is not None
    ]
    return {"seconds": round(time.perf_counter() - start, 1), "error": error, "cells": cells}


def run(settings: dict = FULL, out: Path | None = common.RESULTS) -> dict:
    """Time every chapter of ``settings`` in turn; print the slowest cells; write ``chapters.json``."""
    names = settings["chapters"] or chapters_in_order()
    load_before, timed = os.getloadavg()[0], {}
    for name in names:
        timed[name] = time_chapter(name)
        slowest = sorted(timed[name]["cells"], key=lambda c: -c["seconds"])[:3]
        status = "ok" if timed[name]["error"] is None else timed[name]["error"]
        print(f"{name}: {timed[name]['seconds']:.0f} s ({status})", flush=True)
        for cell in slowest:
            print(f"    cell {cell['cell']}: {cell['seconds']:.0f} s  {cell['source'][:60]!r}", flush=True)
    total = round(sum(chapter["seconds"] for chapter in timed.values()), 1)
    print(f"all chapters: {total:.0f} s")
    load = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
    return common.record(
        "chapters", {"chapters": names}, {"chapters": timed, "total_seconds": total, "load_average_1min": load}, out
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("chapters", nargs="*", help="chapter names (default: all, in reading order)")
    parser.add_argument("--out", type=Path, default=common.RESULTS, help="folder for the JSON (%(default)s)")
    args = parser.parse_args(argv)
    run({"chapters": args.chapters or None}, args.out)


if __name__ == "__main__":
    main()
