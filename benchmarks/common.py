"""Shared pieces of the benchmarks: interleaved timing, medians, tables, and the JSON record each one writes."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

from eva9.results import provenance

RESULTS = Path(__file__).resolve().parent / "results"
"""Where the benchmarks write their JSON by default."""


def interleaved(
    contestants: dict[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 1,
    cpu_seconds: dict[str, list[float]] | None = None,
) -> dict[str, list[float]]:
    """Wall seconds of each callable, run in alternating order (AB, BA, AB, ...) so drifting load hits all alike.

    If ``cpu_seconds`` is given, it is filled with this process's CPU seconds for the same calls.
    """
    names = list(contestants)
    for _ in range(warmup):
        for name in names:
            contestants[name]()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else names[::-1]:
            start, cpu_start = time.perf_counter(), time.process_time()
            contestants[name]()
            seconds[name].append(time.perf_counter() - start)
            if cpu_seconds is not None:
                cpu_seconds.setdefault(name, []).append(time.process_time() - cpu_start)
    return seconds


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median of the round-by-round ratios numerator[i] / denominator[i] (robust to slow drifts in machine load)."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))


def median(values: Sequence[float]) -> float:
    """The median."""
    return statistics.median(values)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print an aligned text table under a title."""
    cells = [list(columns)] + [
        [
            f"{v:,.3g}" if isinstance(v, float) and abs(v) < 100 else (f"{v:,.0f}" if isinstance(v, float) else str(v))
            for v in row
        ]
        for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    print(f"\n{title}")
    for i, row in enumerate(cells):
        print(
            "  ".join(cell.rjust(width) if j else cell.ljust(width) for j, (cell, width) in enumerate(zip(row, widths)))
        )
        if i == 0:
            print("  ".join("-" * width for width in widths))


def record(name: str, settings: dict[str, Any], measurements: dict[str, Any], out: Path | None = RESULTS) -> dict:
    """The benchmark's JSON record (name, provenance, settings, measurements); written to ``out/<name>.json``."""
    payload = {"benchmark": name, **provenance(), "settings": settings, **measurements}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return payload
