"""GradCAM: maps for layer1…layer4 (and for one layer) on a batch — eva9 (one pass) vs the grad-cam package.

The reference library (``pytorch_grad_cam``, package ``grad-cam``) averages its target layers into one map, so a
map per layer needs one GradCAM object, and one forward and backward pass, per layer. eva9 gets every layer's map
from a single pass. Both explain the predicted class. Goal: ≤ 0.5× the reference's time for four layers, ≤ 1.0×
for one layer.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from pytorch_grad_cam import GradCAM as ReferenceGradCAM

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from eva9.gradcam import GradCAM  # noqa: E402
from eva9.models import BasicBlock, ResNet  # noqa: E402

NAME = "gradcam"
LAYERS = ["layer1", "layer2", "layer3", "layer4"]
# The reference needs ~15 s per four-layer call on 32 images here, so the full setting skips the warm-up round
# (the median of three absorbs a slow first call).
FULL = {"images": 32, "repeats": 3, "warmup": 0, "single_layer": "layer4", "blocks": [2, 2, 2, 2], "size": 32}
QUICK = {"images": 8, "repeats": 3, "warmup": 0, "single_layer": "layer4", "blocks": [2, 2, 2, 2], "size": 32}
TINY = {"images": 2, "repeats": 1, "warmup": 0, "single_layer": "layer4", "blocks": [1, 1, 1, 1], "size": 16}
"""Settings: ``blocks`` per stage ([2, 2, 2, 2] is ResNet18) and image ``size`` let a test run a smaller model."""


def eva9_maps(model, images, layers):
    """All layers' maps from one eva9 GradCAM call."""
    with GradCAM(model, layers) as cam:
        return cam(images)


def reference_maps(model, images, layers):
    """One grad-cam object (one forward and backward pass) per layer."""
    maps = {}
    for name in layers:
        with ReferenceGradCAM(model=model, target_layers=[model.get_submodule(name)]) as cam:
            maps[name] = cam(input_tensor=images, targets=None)
    return maps


def run(settings: dict = FULL, out: Path | None = common.RESULTS) -> dict:
    """Time both implementations for four layers and for one; print a table; return (and write) the record."""
    torch.manual_seed(0)
    model = ResNet(BasicBlock, settings["blocks"]).eval()
    size = settings["size"]
    images = torch.randn(settings["images"], 3, size, size)
    cases = {"4 layers": LAYERS, "1 layer": [settings["single_layer"]]}
    seconds, ratios = {}, {}
    for case, layers in cases.items():
        seconds[case] = common.interleaved(
            {
                "reference": lambda layers=layers: reference_maps(model, images, layers),
                "eva9": lambda layers=layers: eva9_maps(model, images, layers),
            },
            repeats=settings["repeats"],
            warmup=settings["warmup"],
        )
        ratios[case] = common.paired_ratio(seconds[case]["eva9"], seconds[case]["reference"])
    common.print_table(
        f"GradCAM on CPU: {'ResNet18' if settings['blocks'] == [2, 2, 2, 2] else 'ResNet' + str(settings['blocks'])}"
        f" (random init), {settings['images']} images {size}×{size}, "
        f"{settings['repeats']} interleaved repeats",
        ["case", "grad-cam median s", "eva9 median s", "eva9 / grad-cam time"],
        [
            [case, common.median(seconds[case]["reference"]), common.median(seconds[case]["eva9"]), ratios[case]]
            for case in cases
        ],
    )
    print("goals: 4 layers ≤ 0.5×, 1 layer ≤ 1.0×")
    return common.record(
        NAME,
        {**settings, "layers": LAYERS},
        {
            "seconds": seconds,
            "time_ratio_eva9_to_reference": ratios,
            "goal": {"4 layers": "<= 0.5", "1 layer": "<= 1.0"},
        },
        out,
    )


if __name__ == "__main__":  # same options as run.py, for this benchmark alone
    import run

    run.main(["--only", NAME, *sys.argv[1:]])
