"""The CAM family's gradient methods: maps for layer1…layer4 on a batch, eva9 (one pass) vs the grad-cam package.

The reference library (``pytorch_grad_cam``, package ``grad-cam``) averages its target layers into one map, so a
map per layer needs one object, and one forward and backward pass, per layer. eva9 gets every layer's map from a
single pass. Every gradient method (GradCAM, GradCAM++, XGradCAM, HiResCAM, LayerCAM) is timed for four layers,
and GradCAM also for one layer; both explain the predicted class; all cases are interleaved in one run. Goal:
≤ 0.35× the reference's time for four layers, for each method; ≤ 1.0× for one layer.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytorch_grad_cam as reference
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from eva9.gradcam import CAM  # noqa: E402
from eva9.models import BasicBlock, ResNet  # noqa: E402

NAME = "gradcam"
LAYERS = ["layer1", "layer2", "layer3", "layer4"]
REFERENCE = {
    "gradcam": reference.GradCAM,
    "gradcam++": reference.GradCAMPlusPlus,
    "xgradcam": reference.XGradCAM,
    "hirescam": reference.HiResCAM,
    "layercam": reference.LayerCAM,
}
"""The gradient methods and the grad-cam class of each."""
GOALS = {"4 layers": 0.35, "1 layer": 1.0}
# The reference needs ~7-15 s per four-layer call on 32 images here, so the full setting skips the warm-up round
# (the median of three absorbs a slow first call).
FULL = {"images": 32, "repeats": 3, "warmup": 0, "single_layer": "layer4", "blocks": [2, 2, 2, 2], "size": 32}
QUICK = {"images": 8, "repeats": 3, "warmup": 0, "single_layer": "layer4", "blocks": [2, 2, 2, 2], "size": 32}
TINY = {"images": 2, "repeats": 1, "warmup": 0, "single_layer": "layer4", "blocks": [1, 1, 1, 1], "size": 16}
"""Settings: ``blocks`` per stage ([2, 2, 2, 2] is ResNet18) and image ``size`` let a test run a smaller model."""


def eva9_maps(model, images, layers, method="gradcam"):
    """All layers' maps from one eva9 call."""
    with CAM(model, layers, method) as cam:
        return cam(images)


def reference_maps(model, images, layers, method="gradcam"):
    """One grad-cam object (one forward and backward pass) per layer."""
    maps = {}
    for name in layers:
        with REFERENCE[method](model=model, target_layers=[model.get_submodule(name)]) as cam:
            maps[name] = cam(input_tensor=images, targets=None)
    return maps


def run(settings: dict = FULL, out: Path | None = common.RESULTS) -> dict:
    """Time both implementations for four layers and for one; print a table; return (and write) the record."""
    torch.manual_seed(0)
    model = ResNet(BasicBlock, settings["blocks"]).eval()
    size = settings["size"]
    images = torch.randn(settings["images"], 3, size, size)
    cases = {f"{method}, 4 layers": (method, LAYERS) for method in REFERENCE}
    cases["gradcam, 1 layer"] = ("gradcam", [settings["single_layer"]])
    contestants = {}
    for case, (method, layers) in cases.items():
        contestants[f"{case}: reference"] = lambda m=method, ls=layers: reference_maps(model, images, ls, m)
        contestants[f"{case}: eva9"] = lambda m=method, ls=layers: eva9_maps(model, images, ls, m)
    timed = common.interleaved(contestants, repeats=settings["repeats"], warmup=settings["warmup"])
    seconds = {case: {who: timed[f"{case}: {who}"] for who in ("reference", "eva9")} for case in cases}
    ratios = {case: common.paired_ratio(seconds[case]["eva9"], seconds[case]["reference"]) for case in cases}
    goals = {case: f"<= {GOALS['1 layer' if case.endswith('1 layer') else '4 layers']}" for case in cases}
    network = "ResNet18" if settings["blocks"] == [2, 2, 2, 2] else f"ResNet{settings['blocks']}"
    common.print_table(
        f"CAM methods on CPU: {network}"
        f" (random init), {settings['images']} images {size}×{size}, "
        f"{settings['repeats']} interleaved repeats",
        ["case", "grad-cam median s", "eva9 median s", "eva9 / grad-cam time", "goal"],
        [
            [case, common.median(seconds[case]["reference"]), common.median(seconds[case]["eva9"]), ratios[case]]
            + [goals[case]]
            for case in cases
        ],
    )
    return common.record(
        NAME,
        {**settings, "layers": LAYERS},
        {"seconds": seconds, "time_ratio_eva9_to_reference": ratios, "goal": goals},
        out,
    )


if __name__ == "__main__":  # same options as run.py, for this benchmark alone
    import run

    run.main(["--only", NAME, *sys.argv[1:]])
