"""The book's tables of recorded runs: a small printable ``Table``, the summary, per-class accuracy and the
published weights. Accuracies come in as fractions and are shown as percentages."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..constants import SHORT_NAMES
from .records import REFERENCE_RUN, TARGET_ACCURACY

_TARGET = f"{100 * TARGET_ACCURACY:g} %"

SUMMARY_HEADERS = {
    "run": "run",
    "profile": "profile",
    "device": "device",
    "date": "date",
    "epochs": "epochs",
    "final_test_acc": "final test accuracy (%)",
    "final_train_acc": "final training accuracy (%)",
    "best_test_acc": "best test accuracy (%)",
    "epochs_to_target": f"epochs to {_TARGET} test accuracy",
    "seconds_to_target": f"time to {_TARGET} test accuracy (s)",
    "median_epoch_seconds": "median epoch, training and test (s)",
    "median_train_images_per_s": "median training speed (images/s)",
    "wall_seconds": "wall time (s)",
}
"""The summary table's header, with its unit, for each field of :func:`run_summary` (in the table's order)."""


@dataclass
class Table:
    """A small table: ``columns`` and ``rows`` of plain values, printable as text, Markdown or HTML."""

    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def _cells(self) -> list[list[str]]:
        return [[_format_cell(value) for value in row] for row in self.rows]

    def transpose(self, corner: str = "") -> Table:
        """The same table turned by a quarter: one row per column, headed by the first column's values."""
        columns = [corner or self.columns[0]] + [_format_cell(row[0]) for row in self.rows]
        rows = [[name] + [row[i] for row in self.rows] for i, name in enumerate(self.columns) if i > 0]
        return Table(columns, rows)

    def to_markdown(self) -> str:
        """A GitHub-flavoured Markdown table."""
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "|".join(" --- " for _ in self.columns) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self._cells()]
        return "\n".join(lines)

    def to_html(self) -> str:
        """An HTML ``<table>``."""
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in self._cells()
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __str__(self) -> str:
        cells = [list(self.columns)] + self._cells()
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells]
        lines.insert(1, "  ".join("-" * width for width in widths))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return self.to_html()

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


def _format_cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _percent(fraction: float | None) -> float | None:
    return None if fraction is None else round(100.0 * fraction, 1)


def _run_name(run: dict) -> str:
    return run.get("name") or run["profile"]


def _column_name(run: dict) -> str:
    gpu = run.get("device") or "?"
    return f"{_run_name(run)} ({gpu})"


def _median(values: Sequence[float]) -> float | None:
    values = sorted(values)
    if not values:
        return None
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def run_summary(run: dict) -> dict[str, Any]:
    """The headline numbers of one run: profile, device, date, epochs, final accuracies (%), epochs/seconds to 87%,
    the median epoch's seconds and training images/s (None for records written before images/s were kept)."""
    epochs = run["history"]["epochs"]
    median = _median([float(row["seconds"]) for row in epochs])
    images_per_s = _median([float(row["train_images_per_s"]) for row in epochs if "train_images_per_s" in row])
    return {
        "run": _run_name(run),
        "profile": run["profile"],
        "device": run["device"],
        "date": run["date"][:10],
        "epochs": len(epochs),
        "final_test_acc": _percent(run["final_test_acc"]),
        "final_train_acc": _percent(run["final_train_acc"]),
        "best_test_acc": _percent(max(float(row["test_acc"]) for row in epochs)),
        "epochs_to_target": run["epochs_to_target"],
        "seconds_to_target": None if run["seconds_to_target"] is None else round(float(run["seconds_to_target"]), 1),
        "median_epoch_seconds": None if median is None else round(median, 2),
        "median_train_images_per_s": None if images_per_s is None else int(round(images_per_s)),
        "wall_seconds": round(float(run["wall_seconds"]), 1),
    }


def summary_table(runs: Iterable[dict], reference: bool = True) -> Table:
    """One row per run (the reference run first if ``reference``): the fields of ``run_summary``, headed by
    ``SUMMARY_HEADERS``."""
    fields = list(SUMMARY_HEADERS)
    rows = []
    if reference:
        ref = REFERENCE_RUN
        rows.append(
            [
                "reference",
                "–",
                "–",
                "–",
                ref["epochs"],
                _percent(ref["final_test_acc"]),
                _percent(ref["final_train_acc"]),
                None,
                None,
                None,
                None,
                None,
                None,
            ]
        )
    for run in runs:
        summary = run_summary(run)
        rows.append([summary[field] for field in fields])
    return Table(list(SUMMARY_HEADERS.values()), rows)


def weights_table(runs: Iterable[dict]) -> Table:
    """The published float16 weights of each run that has them: file, SHA-256 prefix, and their test accuracy (%)
    as recorded during training, reloaded into a float32 model, and with flip test-time augmentation."""
    columns = [
        "run",
        "file",
        "SHA-256 (first 16 hex digits)",
        "test accuracy recorded in training (%)",
        "float32 reload (%)",
        "reload within 0.1 points",
        "float32 with flip TTA (%)",
    ]
    rows = []
    for run in runs:
        weights = run.get("weights")
        if not weights:
            continue
        rows.append(
            [
                _run_name(run),
                weights["file"],
                weights["sha256"][:16],
                f"{100.0 * run['final_test_acc']:.2f}",
                f"{100.0 * weights['test_acc_float32']:.2f}",
                "yes" if weights["matches_record"] else "NO",
                f"{100.0 * weights['test_acc_float32_flip_tta']:.2f}",
            ]
        )
    return Table(columns, rows)


def class_accuracy_table(runs: Iterable[dict], reference: bool = True) -> Table:
    """Per-class test accuracy (%): rows = the ten classes then "overall", columns = reference and each run."""
    runs = list(runs)
    columns = ["test accuracy (%)"] + (["reference"] if reference else []) + [_column_name(run) for run in runs]
    rows = []
    for i, name in enumerate(SHORT_NAMES):
        row: list[Any] = [name]
        if reference:
            row.append(_percent(REFERENCE_RUN["class_accuracy"][name]))
        for run in runs:
            values = run["class_accuracy"]
            row.append(_percent(values[i]) if i < len(values) else None)
        rows.append(row)
    overall: list[Any] = ["overall"]
    if reference:
        overall.append(_percent(REFERENCE_RUN["final_test_acc"]))
    overall += [_percent(run["final_test_acc"]) for run in runs]
    rows.append(overall)
    return Table(columns, rows)


def data_table(runs: Iterable[dict]) -> Table:
    """Which copy of CIFAR-10 each run was trained and tested on, its recorded test accuracy (%), and its published
    weights' test accuracy (%) on the official test images where they were re-scored (plain and flip TTA)."""
    columns = [
        "run",
        "trained on",
        "tested on",
        "recorded test accuracy (%)",
        "official test images",
        "on the official test images (%)",
        "with flip TTA (%)",
    ]
    rows = []
    for run in runs:
        data = run.get("data", {})
        official = run.get("rescored", {}).get("official")
        rows.append(
            [
                _run_name(run),
                data.get("train", "not recorded"),
                data.get("test", "not recorded"),
                f"{100.0 * run['final_test_acc']:.2f}",
                None if official is None else f"{official['test_images']:,}",
                None if official is None else f"{100.0 * official['test_acc_float32']:.2f}",
                None if official is None else f"{100.0 * official['test_acc_float32_flip_tta']:.2f}",
            ]
        )
    return Table(columns, rows)
