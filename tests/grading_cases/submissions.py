"""The reference submission and the deliberately wrong ones, each with the points it must score.

Each wrong submission is the reference (the autograder notebook, which holds the solutions, the reference
``assignment/solution/s9.py`` and the published ``seed`` weights as ``runs/s9/model.pt``) with one mistake: text
replaced in ``s9.py`` or in a notebook cell (found by its tag). ``EXPECTED`` says what each must score per question,
and why each lost point is lost. Used by tests/test_assignment.py and benchmarks/assignment_grading.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from weak_weights import SEED_WEIGHTS, weak_state

ROOT = Path(__file__).resolve().parents[2]
SOLUTION = ROOT / "assignment" / "solution" / "s9.py"

FULL = {"q0": 1, "q1": 4, "q2": 3, "q3": 3, "q4": 2, "q5": 1, "q6": 1, "q7": 1}

TEST_PIPELINE = "return A.Compose([A.Normalize(mean=MEAN, std=STD), ToTensorV2()])"
CUTOUT = "num_holes_range=(1, 1), hole_height_range=(16, 16), hole_width_range=(16, 16), fill=mean_pixel, p=0.5"
INLINE = """from s9 import GradCAM
import albumentations as A
from albumentations.pytorch import ToTensorV2

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def train_transforms():
    return A.Compose([A.HorizontalFlip(p=0.5), A.Normalize(mean=MEAN, std=STD), ToTensorV2()])


def test_transforms():
    return A.Compose([A.Normalize(mean=MEAN, std=STD), ToTensorV2()])
"""

VANDAL = """import os, shutil
for place in (SUBMISSIONS, AUTOGRADER):
    shutil.rmtree(place, ignore_errors=True)
os.remove("runs/s9/model.pt")
"""

# name: (replacements in s9.py, {cell tag: (old, new)}, weights, the points it must score differently from FULL)
WRONG = {
    "test_flip": (
        [(TEST_PIPELINE, TEST_PIPELINE.replace("[A.Normalize", "[A.HorizontalFlip(p=0.5), A.Normalize"))],
        {},
        "seed",
        {"q2": 2},
    ),
    "imagenet_stats": (
        [("(0.4914, 0.4822, 0.4465)", "(0.485, 0.456, 0.406)"), ("(0.2470, 0.2435, 0.2616)", "(0.229, 0.224, 0.225)")],
        {},
        "seed",
        {"q1": 2, "q2": 2},
    ),  # normalise (train, test), and the holes' fill is ImageNet's mean
    "no_totensor": (
        [("            ToTensorV2(),\n", ""), (", ToTensorV2()])", "])")],
        {},
        "seed",
        {"q1": 3, "q2": 2, "q5": 0, "q6": 0, "q7": 0},
    ),  # numpy images break every cell that stacks them
    "cutout_v1_args": (
        [
            (
                CUTOUT,
                "max_holes=1, max_height=16, max_width=16, min_holes=1, min_height=16, min_width=16, "
                "fill_value=mean_pixel, p=0.5",
            )
        ],
        {},
        "seed",
        {"q1": 3},
    ),
    "gradcam_wrong_layer": (
        [("layer.register_forward_hook(self._keep)", "model.layer4.register_forward_hook(self._keep)")],
        {},
        "seed",
        {"q3": 2},
    ),
    # The hooks it leaves behind keep firing: the next forward pass without gradients (the predictions of the
    # mistakes question) raises in them, and so loses the mistakes and the class accuracy too.
    "gradcam_keeps_hooks": (
        [("            handle.remove()\n", "            pass\n")],
        {},
        "seed",
        {"q3": 2, "q6": 0, "q7": 0},
    ),
    "inline_transforms": (
        [],
        {"imports": ("from s9 import GradCAM, test_transforms, train_transforms", INLINE)},
        "seed",
        {"q0": 0},
    ),
    "weights_80": ([], {}, "weak", {"q4": 0}),
    "infinite_loop": (
        [],
        {"class-accuracy": ("class_acc = ", "while True:\n    pass\nclass_acc = ")},
        "seed",
        {"q7": 0},
    ),
    "syntax_error": (
        [("def test_transforms():", "def test_transforms()")],
        {},
        "seed",
        {"q1": 0, "q2": 0, "q3": 0, "q5": 0, "q6": 0, "q7": 0},
    ),
    "reads_hidden_tests": (
        [],
        {"mistakes": ("mistakes = ", "print(open(AUTOGRADER + '/tests/q6.py').read())\nmistakes = ")},
        "seed",
        {"q6": 0},
    ),
    # Two that break nothing graded: a flood of output (cut at the cell's cap) and an attempt to delete the other
    # submissions, the hidden tests and its own weights (only its own scratch copy can be touched).
    "floods_output": (
        [],
        {
            "class-accuracy": (
                "hw.show_class_accuracy",
                "print('\\n'.join(map(str, range(10**6))))\nhw.show_class_accuracy",
            )
        },
        "seed",
        {},
    ),
    "deletes_files": (
        [],
        {"class-accuracy": ("class_acc = ", VANDAL + "class_acc = ")},
        "seed",
        {},
    ),
}

EXPECTED = {"reference": FULL, **{name: {**FULL, **change[3]} for name, change in WRONG.items()}}


def _tagged(notebook: dict, tag: str) -> dict:
    cells = [c for c in notebook["cells"] if tag in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"one cell tagged {tag!r} expected, found {len(cells)}"
    return cells[0]


def make(folder: Path, dist: Path, names: list[str] | None = None) -> list[str]:
    """Write the reference and the wrong submissions (all, or ``names``) as subfolders of ``folder``."""
    names = list(EXPECTED) if names is None else names
    notebook = json.loads((dist / "autograder" / "s9_assignment.ipynb").read_text())
    weak = folder.parent / "weak-model.pt"
    if not weak.exists():
        torch.save(weak_state(), weak)
    for name in names:
        s9_replacements, cells, weights, _ = WRONG.get(name, ([], {}, "seed", {}))
        target = folder / name
        (target / "runs" / "s9").mkdir(parents=True)
        module = SOLUTION.read_text()
        for old, new in s9_replacements:
            assert old in module, f"{name}: {old!r} is not in the solution"
            module = module.replace(old, new)
        (target / "s9.py").write_text(module)
        copy = json.loads(json.dumps(notebook))
        for tag, (old, new) in cells.items():
            cell = _tagged(copy, tag)
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            assert old in source, f"{name}: {old!r} is not in the cell tagged {tag}"
            new = new.replace("AUTOGRADER", repr(str(dist / "autograder"))).replace("SUBMISSIONS", repr(str(folder)))
            cell["source"] = source.replace(old, new)
        (target / "s9_assignment.ipynb").write_text(json.dumps(copy))
        shutil.copyfile(SEED_WEIGHTS if weights == "seed" else weak, target / "runs" / "s9" / "model.pt")
    return names
