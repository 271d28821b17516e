"""What the grader asks of a student's module and notebook, run in the sandbox where their code runs.

``python -m eva9.assignment.probe OUT`` imports the student's ``s9`` from the working directory and records,
as plain numbers, how its pipelines and its GradCAM behave on fixed inputs: ``OUT/probe.json`` and
``OUT/probe_maps.npy``. :func:`dump_answers` is the cell the grader appends to the student's notebook: it records
the notebook's answers (``maps``, ``mistakes``, ``preds``, ``labels``, ``class_acc``) in ``answers.json``. Nothing
here judges: the hidden tests do, in the grader's process, from these files alone (:mod:`eva9.assignment.grader`).
None of this is secret; what the tests demand is.
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..constants import MEAN, STD

__all__ = ["DRAWS", "LAYERS", "probe_images", "gradcam_network", "count_hooks", "probe", "dump_answers"]

DRAWS = 200
"""How many draws of the train pipeline the probe takes of each image."""

LAYERS = ("layer1", "layer2", "layer3", "layer4")
"""The ResNet18 layers whose GradCAM maps are compared with eva9's."""


def probe_images() -> dict[str, np.ndarray]:
    """The 32×32×3 uint8 inputs: left half dark and right half bright, uniform at the CIFAR-10 mean, uniform at
    the mean plus one standard deviation, and seeded noise."""
    left_right = np.zeros((32, 32, 3), np.uint8)
    left_right[:, 16:] = 255
    mean = np.array(MEAN) * 255
    std = np.array(STD) * 255
    rng = np.random.default_rng(0)
    return {
        "left_right": left_right,
        "mean": np.broadcast_to(np.round(mean), (32, 32, 3)).astype(np.uint8),
        "mean_plus_std": np.broadcast_to(np.round(mean + std), (32, 32, 3)).astype(np.uint8),
        "noise": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
    }


def gradcam_network() -> torch.nn.Module:
    """The fixed network GradCAM is checked on: a ResNet18 initialised from seed 0, in eval mode."""
    from ..models import resnet18

    torch.manual_seed(0)
    return resnet18().eval()


def gradcam_inputs() -> torch.Tensor:
    """Four fixed inputs for the GradCAM check (seeded noise, N×3×32×32, about unit variance)."""
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def count_hooks(model: torch.nn.Module) -> int:
    """Forward, forward-pre and backward hooks registered on any module of ``model`` (and globally)."""
    from torch.nn.modules import module as torch_module

    total = 0
    for m in model.modules():
        for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            total += len(getattr(m, name, {}) or {})
    for name in ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks"):
        total += len(getattr(torch_module, name, {}) or {})
    return total


def _as_chw(out: Any) -> tuple[dict[str, Any], np.ndarray | None]:
    """What a pipeline returned (type, dtype, shape) and, if it is an image, its values as a 3×H×W float array."""
    info: dict[str, Any] = {"type": type(out).__name__}
    if isinstance(out, torch.Tensor):
        info.update(dtype=str(out.dtype).replace("torch.", ""), shape=list(out.shape))
        array = out.detach().cpu().float().numpy()
    elif isinstance(out, np.ndarray):
        info.update(dtype=str(out.dtype), shape=list(out.shape))
        array = out.astype(np.float32)
        if array.ndim == 3 and array.shape[-1] == 3 and array.shape[0] != 3:
            array = array.transpose(2, 0, 1)
    else:
        return info, None
    if array.ndim != 3 or array.shape[0] != 3:
        return info, None
    return info, array


def _call(pipeline, image: np.ndarray) -> Any:
    return pipeline(image=image)["image"]


def _seed(pipeline, seed: int) -> None:
    reseed = getattr(pipeline, "set_random_seed", None)
    if callable(reseed):
        reseed(seed)


def _pipeline_probe(pipeline, draws: int) -> dict[str, Any]:
    """Per draw: the left-minus-right brightness of the left/right image, and the per-channel medians and the
    hole (pixels far from the median) of the two uniform images; and the output's kind."""
    images = probe_images()
    _seed(pipeline, 0)
    result: dict[str, Any] = {"left_minus_right": [], "mean_median": [], "std_median": [], "holes": [], "fills": []}
    for draw in range(draws):
        info, lr = _as_chw(_call(pipeline, images["left_right"]))
        if draw == 0:
            result["output"] = info
        if lr is None:
            result["error"] = f"the pipeline returned {info}, not a 3×H×W or H×W×3 image"
            return result
        w = lr.shape[2]
        result["left_minus_right"].append(float(lr[:, :, : w // 2].mean() - lr[:, :, w // 2 :].mean()))
        _, flat = _as_chw(_call(pipeline, images["mean"]))
        result["mean_median"].append([float(np.median(c)) for c in flat])  # type: ignore[union-attr]
        _, bright = _as_chw(_call(pipeline, images["mean_plus_std"]))
        background = np.median(bright.reshape(3, -1), axis=1)  # type: ignore[union-attr]
        result["std_median"].append([float(b) for b in background])
        hole = (np.abs(bright - background[:, None, None]) > 0.05).any(axis=0)
        if hole.any():
            rows, cols = np.flatnonzero(hole.any(axis=1)), np.flatnonzero(hole.any(axis=0))
            box = [int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1]
            result["holes"].append(box + [int(hole.sum())])
            result["fills"].append([float(v) for v in bright[:, hole].mean(axis=1)])  # type: ignore[index]
        else:
            result["holes"].append(None)
            result["fills"].append(None)
    noise = images["noise"]
    repeats = []
    for seed in range(5):
        _seed(pipeline, seed)
        np.random.seed(seed)
        _, a = _as_chw(_call(pipeline, noise))
        repeats.append(a)
    result["repeat_max_difference"] = float(max(np.abs(r - repeats[0]).max() for r in repeats))  # type: ignore[operator]
    return result


def _gradcam_probe(module) -> tuple[dict[str, Any], np.ndarray | None]:
    """The student's GradCAM maps at each of :data:`LAYERS` of the fixed network, and the hooks it left."""
    model = gradcam_network()
    images = gradcam_inputs()
    result: dict[str, Any] = {"hooks_before": count_hooks(model), "hooks_during": [], "hooks_after": []}
    maps = []
    for name in LAYERS:
        cam = module.GradCAM(model, getattr(model, name))
        result["hooks_during"].append(count_hooks(model))
        out = cam(images)
        out = torch.as_tensor(out).detach().float().cpu()
        if out.ndim == 4 and out.shape[1] == 1:
            out = out[:, 0]
        if tuple(out.shape) != (4, 32, 32):
            result["error"] = f"GradCAM at {name} gave a map of shape {tuple(out.shape)}, not B×32×32 (4×32×32 here)"
            return result, None
        maps.append(out.numpy())
        closer = getattr(cam, "__exit__", None)
        if callable(closer):
            closer(None, None, None)
        elif callable(getattr(cam, "remove", None)):
            cam.remove()
        result["hooks_after"].append(count_hooks(model))
    return result, np.stack(maps)


def probe(out: str | Path) -> dict[str, Any]:
    """Import ``s9`` and record its pipelines' and GradCAM's behaviour in ``out`` (see the module docstring)."""
    out = Path(out)
    found: dict[str, Any] = {}
    maps = None
    try:
        sys.path.insert(0, str(Path.cwd()))
        module = importlib.import_module("s9")
    except BaseException as error:  # a syntax error, an exception or an exit at import: all the student's
        found["import_error"] = _short(error)
        module = None
    if module is not None:
        for key, factory, draws in (("train", "train_transforms", DRAWS), ("test", "test_transforms", 20)):
            try:
                found[key] = _pipeline_probe(getattr(module, factory)(), draws)
            except BaseException as error:
                found[key] = {"error": f"{factory}(): {_short(error)}"}
        try:
            found["gradcam"], maps = _gradcam_probe(module)
        except BaseException as error:
            found["gradcam"] = {"error": _short(error)}
    (out / "probe.json").write_text(json.dumps(found), encoding="utf-8")
    if maps is not None:
        np.save(out / "probe_maps.npy", maps.astype(np.float32), allow_pickle=False)
    return found


def _short(error: BaseException) -> str:
    """An exception as one line: its type, message and the last line of the student's code it came from."""
    where = ""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "eva9" not in f.filename]
    if frames:
        where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})"
    message = " ".join(str(error).split())[:200]
    if isinstance(error, SyntaxError):
        where, message = f" ({Path(error.filename or 's9.py').name}:{error.lineno})", str(error.msg)
    return f"{type(error).__name__}: {message}{where}"


def dump_answers(namespace: dict[str, Any], path: str | Path = "answers.json") -> None:
    """Record the notebook's answers (the cell the grader appends): what each name holds, as plain numbers."""
    answers: dict[str, Any] = {}
    maps = namespace.get("maps")
    if isinstance(maps, dict):
        entry = {}
        for name, value in list(maps.items())[:8]:
            try:
                array = torch.as_tensor(value).detach().float().cpu()
                entry[str(name)] = {"shape": list(array.shape), "finite": bool(torch.isfinite(array).all())}
            except Exception as error:
                entry[str(name)] = {"error": _short(error)}
        answers["maps"] = entry
    for name in ("mistakes", "preds", "labels", "class_acc"):
        value = namespace.get(name)
        if value is None:
            continue
        try:
            values = np.asarray(value, dtype=np.float64).reshape(-1)[:20000]
            answers[name] = [float(v) for v in values]
        except Exception as error:
            answers[name] = {"error": _short(error)}
    Path(path).write_text(json.dumps(answers), encoding="utf-8")


if __name__ == "__main__":
    probe(sys.argv[1] if len(sys.argv) > 1 else ".")
