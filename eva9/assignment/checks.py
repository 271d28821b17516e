"""What the hidden tests measure, from the grader's records of a submission (never by running its code).

Each function takes the plain data the probes wrote (:mod:`eva9.assignment.probe`) or the grader read, and either
returns a number for the test to judge or raises :class:`Missing` saying why there is nothing to judge. The
thresholds live in the tests themselves (the master notebook's hidden test cells).
"""

from __future__ import annotations

import ast
from typing import Any

import numpy as np

__all__ = [
    "Missing",
    "need",
    "is_chw_float_tensor",
    "flip_fraction",
    "normalisation_error",
    "square_holes",
    "hole_fill_error",
    "repeat_difference",
    "correlations",
    "hooks_left",
    "hooks_registered",
    "forbidden_imports",
    "notebook_imports",
    "notebook_definitions",
    "class_accuracy_error",
    "mistakes_are_wrong",
]

CAM_MODULES = ("eva9.cam", "eva9.gradcam", "pytorch_grad_cam", "eva9")
"""Modules whose GradCAM a student's own must not be: importing any of them in s9.py forfeits 'your own'."""


class Missing(AssertionError):
    """There is nothing to judge: the probe or the notebook failed before producing it (the message says how)."""


def need(record: dict[str, Any] | None, key: str | None = None) -> Any:
    """``record[key]`` (or ``record``), or :class:`Missing` carrying the error that stopped it."""
    if record is None:
        raise Missing("nothing was recorded (the probe did not finish: time limit or crash)")
    if "error" in record and key is not None:
        raise Missing(record["error"])
    if "import_error" in record:
        raise Missing(f"s9.py could not be imported: {record['import_error']}")
    value = record if key is None else record.get(key)
    if value is None:
        raise Missing(f"no {key} was recorded (the cell that makes it did not run to the end: see the feedback)")
    if isinstance(value, dict) and "error" in value:
        raise Missing(value["error"])
    return value


def is_chw_float_tensor(pipeline: dict[str, Any]) -> bool:
    """Whether the pipeline gave a torch float32 tensor of shape 3×32×32 (what ToTensorV2 makes)."""
    out = pipeline.get("output", {})
    return out.get("type") == "Tensor" and out.get("dtype") == "float32" and out.get("shape") == [3, 32, 32]


def flip_fraction(pipeline: dict[str, Any]) -> float:
    """The share of draws in which the dark-left, bright-right image came out bright on the left (flipped)."""
    signs = np.asarray(need(pipeline, "left_minus_right"), dtype=float)
    return float((signs > 0).mean())


def normalisation_error(pipeline: dict[str, Any]) -> float:
    """How far (largest absolute error over channels and draws) the pipeline's output of an image at CIFAR-10's
    mean is from 0 and of one at mean + std from 1: 0 for Normalize with CIFAR-10's statistics."""
    mean = np.asarray(need(pipeline, "mean_median"), dtype=float)
    plus = np.asarray(need(pipeline, "std_median"), dtype=float)
    return float(max(np.abs(mean).max(), np.abs(plus - 1).max()))


def square_holes(pipeline: dict[str, Any], size: int = 16) -> tuple[float, int]:
    """The share of draws with a hole, and how many of them are one full ``size``×``size`` square."""
    holes = need(pipeline, "holes")
    found = [h for h in holes if h is not None]
    squares = sum(
        1
        for top, bottom, left, right, area in found
        if bottom - top == size and right - left == size and area == size * size
    )
    return len(found) / max(1, len(holes)), squares


def hole_fill_error(pipeline: dict[str, Any]) -> float:
    """How far the holes' fill is from the pipeline's own image of the mean colour (0: mean-filled)."""
    fills = [f for f in need(pipeline, "fills") if f is not None]
    if not fills:
        raise Missing("no draw had a hole")
    mean = np.asarray(need(pipeline, "mean_median"), dtype=float)[0]
    return float(np.abs(np.asarray(fills, dtype=float) - mean).max())


def repeat_difference(pipeline: dict[str, Any]) -> float:
    """The largest difference between five runs of the pipeline on one image under different seeds."""
    return float(need(pipeline, "repeat_max_difference"))


def correlations(maps: np.ndarray | None, reference: np.ndarray) -> np.ndarray:
    """Pearson correlation of the student's map with eva9's, per layer (mean over images): shape (layers,).

    Two constant maps (both all zero: no evidence for the class at that layer) agree (1); one constant, one not,
    do not (0)."""
    if maps is None:
        raise Missing("no GradCAM maps were recorded")
    if maps.shape != reference.shape:
        raise Missing(f"GradCAM maps of shape {maps.shape}, expected {reference.shape}")
    a = maps.reshape(*maps.shape[:2], -1).astype(np.float64)
    b = reference.reshape(*reference.shape[:2], -1).astype(np.float64)
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    norms = np.sqrt((a * a).sum(-1)), np.sqrt((b * b).sum(-1))
    flat_a, flat_b = norms[0] < 1e-9, norms[1] < 1e-9  # a constant map (all zero after the ReLU) has no correlation
    denominator = np.where(flat_a | flat_b, 1.0, norms[0] * norms[1])
    r = np.where(flat_a & flat_b, 1.0, np.where(flat_a | flat_b, 0.0, (a * b).sum(-1) / denominator))
    return r.mean(axis=1)


def hooks_left(gradcam: dict[str, Any]) -> int:
    """Hooks still on the model after each GradCAM was removed, at the worst layer, beyond those there before."""
    record = need(gradcam)
    return int(max(record["hooks_after"]) - record["hooks_before"])


def hooks_registered(gradcam: dict[str, Any]) -> bool:
    """Whether each GradCAM registered at least one hook of its own on the model."""
    record = need(gradcam)
    return all(n > record["hooks_before"] for n in record["hooks_during"])


def _tree(source: str | None, what: str) -> ast.Module:
    if source is None:
        raise Missing(f"{what} was not handed in")
    try:
        return ast.parse(source)
    except SyntaxError as error:
        raise Missing(f"{what} does not parse: {error.msg} (line {error.lineno})") from None


def forbidden_imports(module_source: str | None) -> list[str]:
    """The modules of :data:`CAM_MODULES` (or below them) that s9.py imports."""
    found = []
    for node in ast.walk(_tree(module_source, "s9.py")):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        found += [n for n in names if any(n == m or n.startswith(m + ".") for m in CAM_MODULES)]
    return found


def _code(notebook: dict[str, Any]) -> str:
    """The notebook's code cells as one Python source, IPython's magics and shell lines dropped."""
    lines = []
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        for line in source.splitlines():  # a magic becomes `pass`, so the block it sits in still parses
            stripped = line.lstrip()
            lines.append(line[: len(line) - len(stripped)] + "pass" if stripped.startswith(("%", "!")) else line)
    return "\n".join(lines)


def notebook_imports(notebook: dict[str, Any] | None, names: tuple[str, ...], module: str = "s9") -> set[str]:
    """Which of ``names`` the notebook imports from ``module`` (``from s9 import x`` or ``import s9``)."""
    if notebook is None:
        raise Missing("the notebook was not handed in")
    found: set[str] = set()
    for node in ast.walk(_tree(_code(notebook), "the notebook's code")):
        if isinstance(node, ast.ImportFrom) and node.module == module:
            found |= (
                {a.name for a in node.names} & set(names) if not any(a.name == "*" for a in node.names) else set(names)
            )
        if isinstance(node, ast.Import) and any(a.name == module for a in node.names):
            found |= set(names)
    return found


def notebook_definitions(notebook: dict[str, Any] | None) -> list[str]:
    """What the notebook defines itself that belongs in s9.py: functions or classes named like the module's, or
    Albumentations pipelines built in a cell (``A.Compose(...)``) and hooks registered in one."""
    if notebook is None:
        raise Missing("the notebook was not handed in")
    found = []
    for node in ast.walk(_tree(_code(notebook), "the notebook's code")):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in (
            "train_transforms",
            "test_transforms",
            "GradCAM",
        ):
            found.append(f"{node.name} (line {node.lineno})")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("Compose", "register_forward_hook", "register_full_backward_hook"):
                found.append(f"{node.func.attr}(...) (line {node.lineno})")
    return found


def class_accuracy_error(answers: dict[str, Any]) -> float:
    """The largest difference between the notebook's ``class_acc`` and the per-class accuracy of its own
    ``preds`` and ``labels``."""
    acc = np.asarray(need(answers, "class_acc"), dtype=float)
    preds = np.asarray(need(answers, "preds"), dtype=float)
    labels = np.asarray(need(answers, "labels"), dtype=float)
    if acc.shape != (10,):
        raise Missing(f"class_acc holds {acc.size} values, not one per class (10)")
    if preds.shape != labels.shape or preds.size == 0:
        raise Missing("preds and labels differ in length")
    truth = np.array([(preds[labels == c] == c).mean() if (labels == c).any() else np.nan for c in range(10)])
    return float(np.nanmax(np.abs(acc - truth)))


def mistakes_are_wrong(answers: dict[str, Any], least: int = 10) -> tuple[int, int]:
    """How many of ``mistakes`` index a wrong prediction, and how many there are (at least ``least`` are asked)."""
    mistakes = np.asarray(need(answers, "mistakes"), dtype=float).astype(int)
    preds = np.asarray(need(answers, "preds"), dtype=float)
    labels = np.asarray(need(answers, "labels"), dtype=float)
    inside = mistakes[(mistakes >= 0) & (mistakes < len(preds))]
    return int((preds[inside] != labels[inside]).sum()), int(len(mistakes))
