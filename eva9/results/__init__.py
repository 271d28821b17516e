"""Recorded full-run results: loading ``results/*.json``, the course's reference run, and tables for the book.

:mod:`eva9.results.records` finds, reads and validates the records; :mod:`eva9.results.publishing` publishes them
(weights, the package's manifest of published weights, the index, model cards); :mod:`eva9.results.tables` turns
them into the book's tables. Every name below is importable from ``eva9.results``.
"""

from ..provenance import machine, provenance, versions
from ..weights import sha256_of
from .publishing import (
    index,
    manifest,
    manifest_entry,
    model_card,
    save_weights,
    write_index,
    write_listings,
    write_manifest,
)
from .records import (
    DATA_SOURCES,
    INDEX_FILE,
    REFERENCE_RUN,
    RESULTS_DIR,
    SCHEMA_VERSION,
    TARGET_ACCURACY,
    WEIGHTS_DIR,
    data_description,
    epochs_to_target,
    load_recorded_runs,
    load_run_file,
    record_paths,
    run_history,
    update_record,
    validate_run,
    write_run_file,
)
from .tables import SUMMARY_HEADERS, Table, class_accuracy_table, data_table, run_summary, summary_table, weights_table

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
    "INDEX_FILE",
    "record_paths",
    "index",
    "write_index",
    "manifest",
    "manifest_entry",
    "write_manifest",
    "write_listings",
    "model_card",
    "validate_run",
    "write_run_file",
    "update_record",
    "data_description",
    "load_run_file",
    "load_recorded_runs",
    "run_summary",
    "SUMMARY_HEADERS",
    "summary_table",
    "class_accuracy_table",
    "weights_table",
    "data_table",
    "run_history",
]
