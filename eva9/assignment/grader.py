"""Grade a folder of S9 submissions: one CSV row per student and a feedback file each.

Each submission (a folder holding ``s9_assignment.ipynb``, ``s9.py`` and ``runs/s9/model.pt``) is graded in
three steps, so that the student's code never runs where the hidden tests can be read:

1. its notebook runs in a fresh kernel in a scratch copy, inside the sandbox (:mod:`eva9.assignment.sandbox`: no
   network, read-only file system, the autograder's tests, the submissions folder and the output folder out of
   sight), with a time limit per cell and for the whole; a cell the grader appends records its answers;
2. its module ``s9.py`` is probed in a second sandboxed process, on a second scratch copy
   (:mod:`eva9.assignment.probe`);
3. in the grader's own process, which never imports the student's code, Otter's test runner runs the hidden test
   cases of the autograder's test files over what steps 1 and 2 recorded, the notebook's source, and the accuracy
   of ``runs/s9/model.pt`` (read with ``torch.load(weights_only=True)``), measured here on the official test images.

A submission that crashes, hangs or floods its output loses only what that broke; an error of the grader itself on
one submission becomes that row's reason, and the others are graded.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import numpy as np

from . import probe as probe_module
from . import sandbox
from .execute import TRUNCATED

__all__ = ["NOTEBOOK", "MODULE", "WEIGHTS", "Settings", "Result", "grade_submission", "grade_folder"]

NOTEBOOK = "s9_assignment.ipynb"
MODULE = "s9.py"
WEIGHTS = "runs/s9/model.pt"
MAX_NOTEBOOK_BYTES = 50 * 1024 * 1024
MAX_MODULE_BYTES = 1024 * 1024
MAX_RECORD_BYTES = 8 * 1024 * 1024
MAX_WEIGHTS_BYTES = 200 * 1024 * 1024

DUMP_CELL = "from eva9.assignment.probe import dump_answers as _eva9_dump\n_eva9_dump(globals())"


@dataclass
class Settings:
    """How the grader runs: time limits in seconds, the test images per class for the accuracy (0: all 10,000),
    and whether to use the sandbox's namespaces."""

    cell_timeout: int = 60
    notebook_timeout: int = 600
    probe_timeout: int = 120
    test_per_class: int = 100
    isolate: bool = True
    threads: int = 1
    jobs: int = 1


@dataclass
class Result:
    """One student's grade: points per question, the reason for every lost point, and the feedback text."""

    student: str
    points: dict[str, float]
    possible: dict[str, float]
    reasons: list[str] = field(default_factory=list)
    feedback: str = ""
    seconds: float = 0.0
    executed: dict[str, Any] | None = None

    @property
    def total(self) -> float:
        return sum(self.points.values())


def _test_files(autograder: Path) -> list[Any]:
    """The autograder's Otter test files (tests/q*.py), hidden cases only, in question order."""
    from otter.test_files import ExceptionTestFile

    files = []
    for path in sorted(
        (autograder / "tests").glob("q*.py"), key=lambda p: int(p.stem[1:]) if p.stem[1:].isdigit() else 0
    ):
        test_file = ExceptionTestFile.from_file(str(path))
        test_file.test_cases = [case for case in test_file.test_cases if case.hidden]
        files.append(test_file)
    if not files:
        raise FileNotFoundError(f"no tests/q*.py in {autograder}: build it with `make assignment`")
    return files


def _read_capped(path: Path, limit: int) -> bytes | None:
    """A regular file's bytes (not a link), or None if it is missing, not a plain file or larger than ``limit``."""
    if path.is_symlink() or not path.is_file() or path.stat().st_size > limit:
        return None
    return path.read_bytes()


def _copy_submission(source: Path, scratch: Path) -> None:
    """Copy the submission's plain files (no links, nothing over the notebook's size cap) into ``scratch``."""
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if path.is_symlink() or any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_dir():
            (scratch / relative).mkdir(parents=True, exist_ok=True)
        elif path.is_file() and path.stat().st_size <= MAX_WEIGHTS_BYTES:
            (scratch / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, scratch / relative)


def _environment(scratch: Path, settings: Settings) -> dict[str, str]:
    """The sandboxed process's environment: the grading flags, and every writable place inside ``scratch``."""
    keep = ("PATH", "LANG", "LC_ALL", "EVA9_DATA_DIR", "PYTHONPATH", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k in keep}
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    for name, sub in (
        ("HOME", ".home"),
        ("TMPDIR", ".tmp"),
        ("JUPYTER_RUNTIME_DIR", ".jupyter"),
        ("MPLCONFIGDIR", ".mpl"),
        ("IPYTHONDIR", ".ipython"),
        ("TORCH_HOME", ".torch"),
    ):
        (scratch / sub).mkdir(exist_ok=True)
        env[name] = str(scratch / sub)
    env.update(
        EVA9_ASSIGNMENT_GRADING="1",
        EVA9_ASSIGNMENT_TEST_PER_CLASS="10",
        OMP_NUM_THREADS=str(settings.threads),
        MKL_NUM_THREADS=str(settings.threads),
        PYTHONDONTWRITEBYTECODE="1",
        MPLBACKEND="agg",
    )
    return env


def _record(path: Path, limit: int = MAX_RECORD_BYTES) -> dict[str, Any] | None:
    """A JSON record a sandboxed step wrote, or None if it is missing, larger than ``limit`` or not a JSON object."""
    raw = _read_capped(path, limit)
    try:
        value = json.loads(raw) if raw is not None else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _maps(path: Path) -> np.ndarray | None:
    """The probe's GradCAM maps (layers × images × 32 × 32 float32), or None."""
    raw = _read_capped(path, MAX_RECORD_BYTES)
    if raw is None:
        return None
    try:
        maps = np.load(io.BytesIO(raw), allow_pickle=False)
    except ValueError:
        return None
    expected = (len(probe_module.LAYERS), 4, 32, 32)
    return maps.astype(np.float64) if maps.shape == expected and np.isfinite(maps).all() else None


@functools.lru_cache(maxsize=1)
def reference_maps() -> np.ndarray:
    """eva9's GradCAM maps of the fixed network and inputs at :data:`probe.LAYERS` (layers × 4 × 32 × 32)."""
    from ..cam import GradCAM

    model = probe_module.gradcam_network()
    with GradCAM(model, list(probe_module.LAYERS)) as cam:
        result = cam(probe_module.gradcam_inputs())
    return np.stack([result[name].detach().numpy() for name in probe_module.LAYERS]).astype(np.float64)


class Accuracy:
    """The accuracy of submitted weights on the official test images, once per distinct file (by SHA-256)."""

    def __init__(self, per_class: int) -> None:
        self.per_class = per_class
        self._known: dict[str, dict[str, Any]] = {}
        self._loader: Any = None
        self._lock = threading.Lock()

    def __call__(self, path: Path) -> dict[str, Any]:
        raw = _read_capped(path, MAX_WEIGHTS_BYTES)
        if raw is None:
            return {"error": f"no {WEIGHTS} was handed in (or it is not a plain file under 200 MB)"}
        digest = hashlib.sha256(raw).hexdigest()
        with self._lock:  # one measurement at a time, each distinct file once
            if digest not in self._known:
                self._known[digest] = self._measure(raw)
            return self._known[digest]

    def _measure(self, raw: bytes) -> dict[str, Any]:
        import torch

        from .. import data
        from ..models import resnet18
        from ..train import predict

        try:
            state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
            model = resnet18()
            model.load_state_dict(state)
        except Exception as error:
            return {"error": f"{WEIGHTS} is not a state_dict of eva9's ResNet18 ({' '.join(str(error).split())[:150]})"}
        if self._loader is None:
            per_class = self.per_class or None
            self._loader = data.test_loader(per_class=per_class, batch_size=200, workers=0)
        out = predict(model.float().eval(), self._loader)
        return {"accuracy": float((out.preds == out.labels).float().mean()), "images": len(out.labels)}


def _cell_problems(executed: dict[str, Any] | None) -> list[str]:
    """One line per cell of the executed notebook that raised, timed out or was cut short."""
    if executed is None:
        return ["the notebook did not run to the end (time limit for the whole notebook, or it crashed the kernel)"]
    problems = []
    for number, cell in enumerate(executed.get("cells", []), start=1):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                name, value = output.get("ename", "Error"), " ".join(str(output.get("evalue", "")).split())[:120]
                kind = (
                    "ran past the cell time limit"
                    if name in ("KeyboardInterrupt", "CellTimeoutError")
                    else f"{name}: {value}"
                )
                problems.append(f"cell {number}: {kind}")
            if TRUNCATED.strip() in str(output.get("text", "")):
                problems.append(f"cell {number}: output truncated")
    return problems


def _short_reason(message: str) -> str:
    """The last line of Otter's failure message (the assertion's text or the exception)."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else "failed"
    for prefix in ("AssertionError: ", "Missing: "):
        if last.startswith(prefix):
            return last[len(prefix) :]
    return last


def grade_submission(
    folder: Path,
    autograder: Path,
    settings: Settings,
    *,
    hidden: list[Path],
    accuracy: Accuracy,
    public_tests: Path | None,
) -> Result:
    """Grade one submission folder (see the module docstring); never raises for what the submission does."""
    started = time.monotonic()
    tests = _test_files(autograder)
    possible = {t.name: float(sum(c.points for c in t.test_cases)) for t in tests}
    notebook_raw = _read_capped(folder / NOTEBOOK, MAX_NOTEBOOK_BYTES)
    module_raw = _read_capped(folder / MODULE, MAX_MODULE_BYTES)
    notebook = None
    if notebook_raw is not None:
        try:
            notebook = json.loads(notebook_raw)
        except ValueError:
            notebook = None
    env: dict[str, Any] = {
        "notebook": notebook,
        "module_source": module_raw.decode("utf-8", errors="replace") if module_raw is not None else None,
        "reference_maps": reference_maps(),
        "accuracy": accuracy(folder / WEIGHTS),
    }
    with tempfile.TemporaryDirectory(prefix="eva9-grade-") as tmp:
        run_dir, probe_dir = Path(tmp) / "notebook", Path(tmp) / "probe"
        run_dir.mkdir()
        probe_dir.mkdir()
        executed = None
        notes: list[str] = []
        if notebook is not None:
            _copy_submission(folder, run_dir)
            if public_tests is not None and public_tests.is_dir():
                shutil.copytree(public_tests, run_dir / "tests", dirs_exist_ok=True)
            try:
                nb = nbformat.reads(notebook_raw.decode("utf-8", errors="replace"), as_version=4)  # type: ignore[union-attr]
                nb.cells.append(nbformat.v4.new_code_cell(DUMP_CELL))
                nbformat.write(nb, run_dir / ".graded.ipynb")
                outcome = sandbox.run(
                    [
                        sys.executable,
                        "-m",
                        "eva9.assignment.execute",
                        ".graded.ipynb",
                        ".executed.ipynb",
                        "--cell-timeout",
                        str(settings.cell_timeout),
                    ],
                    run_dir,
                    hidden=hidden,
                    timeout=settings.notebook_timeout,
                    env=_environment(run_dir, settings),
                    isolate=settings.isolate,
                )
                if outcome.timed_out:
                    notes.append(f"the notebook ran past the grader's limit of {settings.notebook_timeout} s")
                executed = _record(run_dir / ".executed.ipynb", MAX_NOTEBOOK_BYTES)
            except Exception as error:  # a notebook nbformat cannot read
                notes.append(f"the notebook could not be read: {' '.join(str(error).split())[:150]}")
            answers = _record(run_dir / "answers.json") if executed is not None else None
            if answers is None:  # (an empty record is an answer: the notebook ran and defined none of the names)
                answers = {
                    "error": "the notebook did not run to its end (the whole notebook's time limit, or its kernel died)"
                }
            env["answers"] = answers
        else:
            notes.append(f"no readable {NOTEBOOK} was handed in")
            env["answers"] = {"error": f"no readable {NOTEBOOK} was handed in"}
        if module_raw is not None:
            (probe_dir / MODULE).write_bytes(module_raw)
            outcome = sandbox.run(
                [sys.executable, "-m", "eva9.assignment.probe", "."],
                probe_dir,
                hidden=hidden,
                timeout=settings.probe_timeout,
                env=_environment(probe_dir, settings),
                isolate=settings.isolate,
            )
            env["probe"] = _record(probe_dir / "probe.json")
            if env["probe"] is None:
                env["probe"] = {
                    "import_error": "s9.py ran past the time limit or crashed its process"
                    if outcome.timed_out or outcome.returncode
                    else "s9.py left no record"
                }
            env["maps"] = _maps(probe_dir / "probe_maps.npy")
        else:
            env["probe"] = {"import_error": f"no {MODULE} was handed in"}
            env["maps"] = None
        notes += _cell_problems(executed) if notebook is not None else []
    points, reasons, lines = {}, [], []
    for test_file in tests:
        test_file.run(env)
        got, lost = 0.0, dict[str, float]()  # lost: reason -> points, so one cause lost in several tests reads once
        for case_result in test_file.test_case_results:
            case = case_result.test_case
            test = getattr(getattr(case.body, "test_func", None), "__name__", case.name)
            worth = f"{case.points:g} point{'s' if case.points != 1 else ''}"
            if case_result.passed:
                got += case.points
                lines.append(f"- {test_file.name} `{test}`: passed ({worth})")
            else:
                reason = _short_reason(case_result.message)
                lost[reason] = lost.get(reason, 0.0) + case.points
                lines.append(f"- {test_file.name} `{test}`: **lost {worth}**: {reason}")
        reasons += [f"{test_file.name} -{p:g}: {reason}" for reason, p in lost.items()]
        points[test_file.name] = got
    result = Result(folder.name, points, possible, reasons, seconds=time.monotonic() - started, executed=executed)
    result.feedback = _feedback(result, lines, notes)
    return result


def _feedback(result: Result, lines: list[str], notes: list[str]) -> str:
    total, possible = result.total, sum(result.possible.values())
    text = [f"# S9: feedback for {result.student}", "", f"**{total:g} / {possible:g} points**", ""]
    text += [f"- {q}: {result.points[q]:g} / {result.possible[q]:g}" for q in result.points]
    text += ["", "## The hidden tests", "", *lines]
    if notes:
        text += ["", "## How your notebook ran", "", *[f"- {n}" for n in notes]]
    return "\n".join(text) + "\n"


def grade_folder(
    submissions: str | os.PathLike,
    autograder: str | os.PathLike,
    out: str | os.PathLike,
    settings: Settings | None = None,
) -> list[Result]:
    """Grade every subfolder of ``submissions``; write ``out/grades.csv`` and ``out/feedback/<student>.md``."""
    from ..files import write_atomic

    settings = settings or Settings()
    submissions, autograder, out = Path(submissions).resolve(), Path(autograder).resolve(), Path(out).resolve()
    if not submissions.is_dir():
        raise FileNotFoundError(f"no submissions folder at {submissions}")
    if settings.isolate and not sandbox.available():
        raise RuntimeError(
            "unshare cannot make namespaces here (unprivileged user namespaces are off); "
            "grade with --no-isolation only for submissions you trust"
        )
    if out == submissions or submissions in out.parents:
        raise ValueError(f"the output folder {out} must lie outside the submissions folder {submissions}")
    public_tests = autograder.parent / "student" / "tests"
    (out / "feedback").mkdir(parents=True, exist_ok=True)
    (out / "executed").mkdir(exist_ok=True)
    master = Path(__file__).resolve().parents[2] / "assignment"  # a checkout's master notebook and solution
    hidden = [autograder, submissions, out] + ([master] if master.is_dir() else [])
    reference_maps()  # once, before the threads: it seeds torch's global generator, which they would share
    accuracy = Accuracy(settings.test_per_class)
    results = []
    folders = sorted(p for p in submissions.iterdir() if p.is_dir() and not p.is_symlink())

    def one(folder: Path) -> Result:
        try:
            result = grade_submission(
                folder, autograder, settings, hidden=hidden, accuracy=accuracy, public_tests=public_tests
            )
        except Exception as error:  # the grader's own failure on this submission: say so, grade the others
            possible = {t.name: float(sum(c.points for c in t.test_cases)) for t in _test_files(autograder)}
            result = Result(
                folder.name,
                {q: 0.0 for q in possible},
                possible,
                [f"grader error: {type(error).__name__}: {' '.join(str(error).split())[:200]}"],
            )
            result.feedback = _feedback(result, [], result.reasons)
        name = "".join(c if c.isalnum() or c in "._-" else "_" for c in folder.name)
        write_atomic(out / "feedback" / f"{name}.md", result.feedback)
        if result.executed is not None:  # the notebook as it ran under the grader, for the teacher to read
            write_atomic(out / "executed" / f"{name}.ipynb", json.dumps(result.executed))
        return result

    with ThreadPoolExecutor(max_workers=max(1, settings.jobs)) as pool:  # each submission: its own processes
        results = list(pool.map(one, folders))
    write_atomic(out / "grades.csv", _csv(results))
    return results


def _csv(results: list[Result]) -> str:
    buffer = io.StringIO()
    questions = list(results[0].possible) if results else []
    writer = csv.writer(buffer)
    writer.writerow(["student", *questions, "total", "possible", "reasons"])
    for r in results:
        writer.writerow(
            [
                r.student,
                *[f"{r.points.get(q, 0):g}" for q in questions],
                f"{r.total:g}",
                f"{sum(r.possible.values()):g}",
                "; ".join(r.reasons),
            ]
        )
    return buffer.getvalue()
