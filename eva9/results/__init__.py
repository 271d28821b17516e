"""Recorded full-run results: loading ``results/*.json``, the course's reference run, and tables for the book.

:mod:`eva9.results.records` reads, validates and publishes the records; :mod:`eva9.results.tables` turns them into
the book's tables. Every name below is importable from ``eva9.results``.
"""

from ..provenance import machine, provenance, versions
from ..weights import sha256_of
from .records import (
    DATA_SOURCES,
    REFERENCE_RUN,
    RESULTS_DIR,
    SCHEMA_VERSION,
    TARGET_ACCURACY,
    WEIGHTS_DIR,
    data_description,
    epochs_to_target,
    load_recorded_runs,
    load_run_file,
    run_history,
    save_weights,
    update_record,
    validate_run,
    write_run_file,
)
from .tables import Table, class_accuracy_table, data_table, run_summary, summary_table, weights_table

__all__ = [
    "SCHEMA_VERSION",
    "TARGET_ACCURACY",
    "RESULTS_DIR",
    "WEIGHTS_DIR",
    "REFERENCE_RUN",
    "DATA_SOURCES",
    "Table",
    "provenance",
    "versions",
    "machine",
    "epochs_to_target",
    "sha256_of",
    "save_weights",
    "validate_run",
    "write_run_file",
    "update_record",
    "data_description",
    "load_run_file",
    "load_recorded_runs",
    "run_summary",
    "summary_table",
    "class_accuracy_table",
    "weights_table",
    "data_table",
    "run_history",
]
