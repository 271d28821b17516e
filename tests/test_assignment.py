"""The S9 assignment's grader: the reference scores full marks, each wrong submission loses exactly its points.

The module fixture builds the assignment with Otter Assign, writes the reference and eleven wrong submissions
(tests/grading_cases/submissions.py) and grades them all once, sandboxed, as a teacher would; the tests read
the CSV and the feedback. The checks' arithmetic is tested alone on hand-made records.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

from eva9.assignment import checks, sandbox
from eva9.assignment.execute import MAX_OUTPUT_CHARS, TRUNCATED
from eva9.assignment.grader import Settings, grade_folder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "grading_cases"))
import submissions  # noqa: E402

DATA = Path(os.environ.get("EVA9_DATA_DIR", str(ROOT / "data")))
needs_data = pytest.mark.skipif(
    not (DATA / "cifar-10-batches-py").is_dir(),
    reason="the grader evaluates weights on the official test images: set EVA9_DATA_DIR to a CIFAR-10 copy",
)
needs_sandbox = pytest.mark.skipif(not sandbox.available(), reason="unshare cannot make namespaces here")


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """The assignment built by Otter Assign: dist/student and dist/autograder."""
    out = tmp_path_factory.mktemp("assignment") / "dist"
    master = ROOT / "assignment" / "s9_assignment.ipynb"
    subprocess.run([sys.executable, "-m", "otter", "assign", str(master), str(out)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def graded(dist):
    """Every submission written and graded once, as a teacher would: (rows by student, output folder, dist)."""
    folder = dist.parent / "submissions"
    folder.mkdir()
    submissions.make(folder, dist)
    out = dist.parent / "grades"
    settings = Settings(cell_timeout=20, notebook_timeout=300, probe_timeout=120, jobs=2)
    grade_folder(folder, dist / "autograder", out, settings)
    with open(out / "grades.csv", newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    return rows, out, dist


@needs_data
@needs_sandbox
@pytest.mark.parametrize("student", list(submissions.EXPECTED))
def test_each_submission_scores_exactly_its_points(graded, student):
    rows, _, _ = graded
    row = rows[student]
    got = {q: float(row[q]) for q in submissions.FULL}
    assert got == {q: float(p) for q, p in submissions.EXPECTED[student].items()}, row["reasons"]
    lost = sum(submissions.FULL.values()) - sum(got.values())
    assert (row["reasons"] == "") == (lost == 0), "every lost point has a reason, and only lost points"


@needs_data
@needs_sandbox
def test_reference_scores_full_marks_and_every_student_gets_feedback(graded):
    rows, out, _ = graded
    assert rows["reference"]["total"] == rows["reference"]["possible"] == "16"
    assert sorted(p.stem for p in (out / "feedback").glob("*.md")) == sorted(submissions.EXPECTED)
    assert "16 / 16 points" in (out / "feedback" / "reference.md").read_text()


@needs_data
@needs_sandbox
def test_a_notebook_that_ran_without_making_an_answer_is_told_which_answer(graded):
    rows, _, _ = graded
    reasons = rows["no_totensor"]["reasons"]
    assert "q5 -1: no maps was recorded" in reasons and "did not run to its end" not in reasons


@needs_data
@needs_sandbox
def test_hidden_tests_are_out_of_reach_of_the_submission(graded):
    rows, out, dist = graded
    reasons = rows["reads_hidden_tests"]["reasons"]
    assert "q6 -1" in reasons
    feedback = (out / "feedback" / "reads_hidden_tests.md").read_text()
    assert "FileNotFoundError" in feedback or "PermissionError" in feedback
    hidden_source = (dist / "autograder" / "tests" / "q6.py").read_text()
    assert "mistakes_are_wrong" in hidden_source
    assert "mistakes_are_wrong" not in (out / "executed" / "reads_hidden_tests.ipynb").read_text()


@needs_data
@needs_sandbox
def test_a_hanging_cell_is_cut_at_its_limit_and_the_rest_still_runs(graded):
    rows, out, _ = graded
    feedback = (out / "feedback" / "infinite_loop.md").read_text()
    assert "ran past the cell time limit" in feedback
    assert float(rows["infinite_loop"]["q6"]) == 1  # the cell before it counted; the one after ran too


@needs_data
@needs_sandbox
def test_a_flood_of_output_is_cut_and_deleting_files_touches_only_the_own_scratch_copy(graded):
    rows, out, dist = graded
    assert "output truncated" in (out / "feedback" / "floods_output.md").read_text()
    flood = json.loads((out / "executed" / "floods_output.ipynb").read_text())
    cell = next(c for c in flood["cells"] if "class-accuracy" in c["metadata"].get("tags", []))
    assert sum(len(o.get("text", "")) for o in cell["outputs"]) <= MAX_OUTPUT_CHARS + len(TRUNCATED)  # of 6.9 MB
    assert rows["deletes_files"]["total"] == "16"
    assert (dist / "autograder" / "tests" / "q1.py").is_file()
    folder = dist.parent / "submissions"
    assert all((folder / name / "runs" / "s9" / "model.pt").is_file() for name in submissions.EXPECTED)


def test_the_grader_grades_what_it_cannot_run_as_zero_with_reasons(tmp_path, dist):
    (tmp_path / "subs" / "empty").mkdir(parents=True)
    (tmp_path / "subs" / "garbage").mkdir()
    (tmp_path / "subs" / "garbage" / "s9_assignment.ipynb").write_text("{not json")
    results = grade_folder(tmp_path / "subs", dist / "autograder", tmp_path / "out", Settings(isolate=False))
    assert [r.total for r in results] == [0, 0]
    assert "no readable s9_assignment.ipynb" in results[0].feedback
    assert any("no runs/s9/model.pt" in reason for reason in results[0].reasons)
    rows = list(csv.DictReader((tmp_path / "out" / "grades.csv").read_text().splitlines()))
    assert [row["student"] for row in rows] == ["empty", "garbage"]


def test_public_tests_ship_without_the_hidden_ones(dist):
    student = (dist / "student" / "tests" / "q1.py").read_text()
    teacher = (dist / "autograder" / "tests" / "q1.py").read_text()
    assert "hidden=True" in teacher and "hidden=True" not in student
    assert "test_train_output" in student and "test_train_flips" not in student


def _pipeline_record(left_minus_right, mean_median=(0.0, 0.0, 0.0), std_median=(1.0, 1.0, 1.0), holes=None, fills=None):
    n = len(left_minus_right)
    return {
        "left_minus_right": list(left_minus_right),
        "mean_median": [list(mean_median)] * n,
        "std_median": [list(std_median)] * n,
        "holes": holes if holes is not None else [None] * n,
        "fills": fills if fills is not None else [None] * n,
        "output": {"type": "Tensor", "dtype": "float32", "shape": [3, 32, 32]},
        "repeat_max_difference": 0.0,
    }


def test_flip_fraction_counts_draws_bright_on_the_left():
    assert checks.flip_fraction(_pipeline_record([1.0, -1.0, -2.0, 3.0])) == 0.5
    assert checks.flip_fraction(_pipeline_record([-1.0] * 5)) == 0.0


def test_normalisation_error_is_the_distance_from_zero_and_one():
    assert checks.normalisation_error(_pipeline_record([-1.0])) == 0.0
    imagenet = _pipeline_record([-1.0], mean_median=(0.03, 0.12, 0.2), std_median=(1.1, 1.1, 1.2))
    assert checks.normalisation_error(imagenet) == pytest.approx(0.2)


def test_square_holes_counts_only_full_squares():
    record = _pipeline_record([0, 0, 0, 0], holes=[[0, 16, 0, 16, 256], None, [0, 8, 0, 16, 128], None])
    assert checks.square_holes(record) == (0.5, 1)


def test_correlations_treat_two_flat_maps_as_agreeing_and_one_as_not():
    rng = np.random.default_rng(0)
    ref = rng.random((2, 3, 8, 8))
    ref[1, 2] = 0
    assert checks.correlations(ref * 3 + 1, ref) == pytest.approx([1.0, 1.0])
    other = ref.copy()
    other[1, 2] = rng.random((8, 8))
    assert checks.correlations(other, ref)[1] == pytest.approx(2 / 3)


def test_a_missing_record_names_why():
    with pytest.raises(checks.Missing, match="SyntaxError"):
        checks.need({"import_error": "SyntaxError: expected ':' (s9.py:33)"}, "train")


def test_the_import_check_sees_imports_and_inline_definitions():
    notebook = {
        "cells": [
            {"cell_type": "code", "source": "if x:\n    %pip install y\nfrom s9 import GradCAM, train_transforms"},
            {"cell_type": "code", "source": "def test_transforms():\n    return A.Compose([])"},
        ]
    }
    assert checks.notebook_imports(notebook, ("GradCAM", "train_transforms", "test_transforms")) == {
        "GradCAM",
        "train_transforms",
    }
    assert checks.notebook_definitions(notebook) == ["test_transforms (line 4)", "Compose(...) (line 5)"]


def test_s9_may_not_borrow_a_gradcam():
    assert checks.forbidden_imports("from eva9.cam import GradCAM\nimport torch") == ["eva9.cam"]
    assert checks.forbidden_imports("import pytorch_grad_cam.base_cam as b") == ["pytorch_grad_cam.base_cam"]
    assert checks.forbidden_imports("import torch") == []


PROBE_SANDBOX = """
import json, os, socket, sys
found = {}
try:
    found["hidden"] = os.listdir(sys.argv[1])
except OSError as error:
    found["hidden"] = type(error).__name__
try:
    open(sys.argv[2], "w")
    found["outside"] = "written"
except OSError as error:
    found["outside"] = type(error).__name__
try:
    socket.create_connection(("1.1.1.1", 80), timeout=2)
    found["network"] = "connected"
except OSError as error:
    found["network"] = type(error).__name__
found["pids"] = len([p for p in os.listdir("/proc") if p.isdigit()])
open("found.json", "w").write(json.dumps(found))
"""


@needs_sandbox
def test_the_sandbox_hides_folders_blocks_writes_and_the_network_and_shows_only_its_own_processes(tmp_path):
    scratch, secret, outside = tmp_path / "scratch", tmp_path / "secret", tmp_path / "outside.txt"
    scratch.mkdir()
    secret.mkdir()
    (secret / "q1.py").write_text("hidden")
    (scratch / "probe.py").write_text(PROBE_SANDBOX)
    command = [sys.executable, "probe.py", str(secret), str(outside)]
    outcome = sandbox.run(command, scratch, hidden=[secret], timeout=60)
    assert outcome.returncode == 0, outcome.output
    found = json.loads((scratch / "found.json").read_text())
    assert found["hidden"] in ([], "PermissionError")
    assert found["outside"] == "OSError" and not outside.exists()
    assert found["network"] in ("OSError", "ConnectionRefusedError", "TimeoutError") or "Network" in found["network"]
    assert found["pids"] <= 5  # the shell's exec chain and python: nothing of the grader's
    assert (secret / "q1.py").read_text() == "hidden"


@needs_sandbox
def test_the_sandbox_kills_a_process_tree_at_its_time_limit(tmp_path):
    command = ["sh", "-c", "sleep 100 & sleep 100"]
    outcome = sandbox.run(command, tmp_path, timeout=2)
    assert outcome.timed_out and outcome.returncode is None


def test_a_cell_keeps_at_most_its_output_cap_even_from_one_huge_message(tmp_path):
    from eva9.assignment.execute import execute

    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(s) for s in ("print('x' * 10**7)", "for i in range(10**6): print(i)", "1 + 1")]
    )
    nbformat.write(notebook, tmp_path / "in.ipynb")
    execute(tmp_path / "in.ipynb", tmp_path / "out.ipynb", cell_timeout=60)
    done = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    for cell in done.cells[:2]:
        assert sum(len(o.get("text", "")) for o in cell.outputs) <= MAX_OUTPUT_CHARS + len(TRUNCATED)
        assert [o.get("text") for o in cell.outputs].count(TRUNCATED) == 1
    assert done.cells[2].outputs[0]["data"]["text/plain"] == "2"


def test_the_training_cell_loads_handed_in_weights_and_under_the_grader_never_trains(tmp_path, monkeypatch):
    import torch

    from eva9.assignment import scaffold
    from eva9.models import resnet18

    reference = resnet18()
    (tmp_path / "run").mkdir()
    torch.save(reference.state_dict(), tmp_path / "run" / "model.pt")
    loaded = scaffold.train_network(None, None, out=tmp_path / "run")
    assert not loaded.training
    assert torch.equal(loaded.state_dict()["linear.weight"], reference.state_dict()["linear.weight"])
    monkeypatch.setenv(scaffold.GRADING_ENV, "1")
    stand_in = scaffold.train_network(None, None, out=tmp_path / "empty")
    assert not stand_in.training and not (tmp_path / "empty").exists()


def test_the_command_line_says_in_one_line_what_is_missing(tmp_path, capsys):
    from eva9.assignment.__main__ import main

    assert main(["grade", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"), "--no-isolation"]) == 1
    assert capsys.readouterr().err.strip().count("\n") == 0
