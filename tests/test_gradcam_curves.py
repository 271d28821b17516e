"""Deletion and insertion curves, their baselines and the faithfulness ranking, on a model whose evidence is known:
it reads only one patch of the image."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from eva9.gradcam import (
    CAM,
    blurred,
    deletion_curve,
    edge_map,
    faithfulness_scores,
    insertion_curve,
    random_map,
    ranking_agreement,
)

SCALE = 3.0


class PatchReader(nn.Module):
    """Class 0's logit is SCALE times the mean of the top-left 4×4 patch (all channels) of an 8×8 image, class 1's
    is zero; a 1×1 convolution in front gives the CAM methods a layer to explain."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 3, kernel_size=1, bias=False)
        with torch.no_grad():
            self.features.weight.copy_(torch.eye(3)[:, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patch = self.features(x)[:, :, :4, :4].mean(dim=(1, 2, 3))
        return torch.stack([SCALE * patch, torch.zeros_like(patch)], dim=1)


def patch_map(batch: int = 2) -> torch.Tensor:
    maps = torch.zeros(batch, 8, 8)
    maps[:, :4, :4] = 1.0
    return maps


def sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def test_deleting_the_patch_first_drops_the_class_to_chance_after_one_step():
    images = torch.ones(2, 3, 8, 8)
    curve = deletion_curve(PatchReader(), images, patch_map(), steps=4)  # 16 pixels a step: the patch is step 1
    assert curve.kind == "deletion"
    assert curve.fractions.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    expected = torch.tensor([sigmoid(SCALE), 0.5, 0.5, 0.5, 0.5], dtype=torch.float64)
    torch.testing.assert_close(curve.probabilities, expected.expand(2, 5))
    assert curve.targets.tolist() == [0, 0]  # the prediction on the intact image
    area = 0.25 * ((sigmoid(SCALE) + 0.5) / 2 + 0.5 * 3)
    assert curve.area == pytest.approx(area)
    torch.testing.assert_close(curve.mean(), expected)


def test_inserting_the_patch_first_restores_the_class_after_one_step():
    images = torch.ones(2, 3, 8, 8)
    curve = insertion_curve(PatchReader(), images, patch_map(), steps=4, baseline="mean")
    expected = torch.tensor([0.5] + [sigmoid(SCALE)] * 4, dtype=torch.float64)
    torch.testing.assert_close(curve.probabilities, expected.expand(2, 5))
    assert curve.area == pytest.approx(0.25 * ((0.5 + sigmoid(SCALE)) / 2 + 3 * sigmoid(SCALE)))


def test_the_patch_map_beats_the_random_map_and_the_edge_map_on_both_curves():
    generator = torch.Generator().manual_seed(0)
    images = 1.0 + 0.1 * torch.randn(8, 3, 8, 8, generator=generator)
    model = PatchReader()
    ranked = {
        "patch": patch_map(8),
        "random": random_map((8, 8, 8), seed=0),
        "edge": edge_map(images, normalized=False),
    }
    deletion = {name: deletion_curve(model, images, m, steps=8).area for name, m in ranked.items()}
    insertion = {name: insertion_curve(model, images, m, steps=8, baseline="mean").area for name, m in ranked.items()}
    assert deletion["patch"] < deletion["random"] and deletion["patch"] < deletion["edge"]
    assert insertion["patch"] > insertion["random"] and insertion["patch"] > insertion["edge"]


def test_a_cam_of_the_patch_reader_ranks_like_the_patch_itself():
    images = torch.ones(2, 3, 8, 8)
    with CAM(PatchReader(), "features", "hirescam") as cam:
        maps = cam(images, 0)["features"]
    found = deletion_curve(PatchReader(), images, maps, steps=4)
    truth = deletion_curve(PatchReader(), images, patch_map(), steps=4)
    torch.testing.assert_close(found.probabilities, truth.probabilities)


def test_the_blurred_baseline_is_where_insertion_starts_and_the_image_where_it_ends():
    checkerboard = ((torch.arange(8)[:, None] + torch.arange(8)[None]) % 2).float().expand(1, 3, 8, 8) * 2 - 1
    soft = blurred(checkerboard)
    assert soft.shape == checkerboard.shape
    assert soft.var() < 0.1 * checkerboard.var()  # the pattern is gone, the mean colour stays
    assert soft.mean() == pytest.approx(float(checkerboard.mean()), abs=0.05)
    torch.testing.assert_close(blurred(torch.full((1, 3, 8, 8), 0.7)), torch.full((1, 3, 8, 8), 0.7))

    model = PatchReader()
    curve = insertion_curve(model, checkerboard, patch_map(1), steps=4)
    with torch.no_grad():
        first, last = model(soft).softmax(1)[0, curve.targets[0]], model(checkerboard).softmax(1)[0, curve.targets[0]]
    assert curve.probabilities[0, 0] == pytest.approx(float(first))
    assert curve.probabilities[0, -1] == pytest.approx(float(last))


def test_the_edge_map_follows_a_step_edge_and_is_empty_on_a_flat_image():
    step = torch.zeros(1, 3, 8, 8)
    step[..., 4:] = 1.0  # dark left half, bright right half
    edges = edge_map(step, normalized=False)
    assert edges.shape == (1, 8, 8)
    assert torch.equal(edges[0, :, 3:5], torch.ones(8, 2))  # the two columns either side of the edge
    assert edges[0, :, :3].max() == 0 and edges[0, :, 5:].max() == 0
    assert edge_map(torch.full((2, 3, 8, 8), 0.3), normalized=False).max() == 0


def test_the_random_map_is_uniform_noise_fixed_by_its_seed_per_pixel_or_in_blobs():
    first, again, other = random_map((2, 5, 6), seed=3), random_map((2, 5, 6), seed=3), random_map((2, 5, 6), seed=4)
    assert first.shape == (2, 5, 6) and torch.equal(first, again) and not torch.equal(first, other)
    assert 0 <= first.min() and first.max() < 1
    blobs = random_map((2, 8, 8), seed=3, cells=(2, 2))
    assert blobs.shape == (2, 8, 8) and 0 <= blobs.min() and blobs.max() < 1
    assert torch.equal(blobs[:, :2, :2], blobs[:, :1, :1].expand(2, 2, 2))  # a cell's corner is flat: blobs


def test_steps_round_to_whole_pixels_and_given_targets_are_used():
    images = torch.ones(1, 3, 8, 8)
    curve = deletion_curve(PatchReader(), images, patch_map(1), steps=3, targets=1)
    assert curve.fractions.tolist() == [0.0, 21 / 64, 43 / 64, 1.0]
    assert curve.targets.tolist() == [1]
    assert curve.probabilities[0, 0] == pytest.approx(1 - sigmoid(SCALE))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": 0}, "steps"),
        ({"baseline": "noise"}, "baseline"),
        ({"targets": 5}, r"\[0, 1\]"),
        ({"maps": torch.zeros(2, 4, 4)}, "B×H×W"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    arguments = {"maps": patch_map(), **kwargs}
    with pytest.raises(ValueError, match=message):
        deletion_curve(PatchReader(), torch.ones(2, 3, 8, 8), **arguments)


def test_faithfulness_scores_rank_the_method_that_sees_the_patch_above_the_baselines():
    generator = torch.Generator().manual_seed(0)
    images = 0.1 * torch.randn(6, 3, 8, 8, generator=generator)
    images[..., :4, :4] += 2.0  # a bright patch, which the blurred baseline of the insertion curve smears out
    scores = faithfulness_scores(PatchReader(), images, ["hirescam", "gradcam"], ["features"], steps=8)
    rows = ["hirescam @ features", "gradcam @ features", "random map", "random 4×4 blobs", "edge map"]
    assert list(scores.deletion) == rows and list(scores.insertion) == rows
    assert all(values.shape == (6,) for values in scores.per_image("deletion").values())
    torch.testing.assert_close(scores.per_image("insertion")["edge map"], scores.insertion["edge map"].areas)
    deletion_at, insertion_at = scores.curves_at("features")
    assert list(deletion_at) == list(insertion_at) == rows
    deletion, insertion = scores.means("deletion"), scores.means("insertion")
    assert deletion["hirescam @ features"] < min(deletion["random map"], deletion["edge map"])
    assert insertion["hirescam @ features"] > max(insertion["random map"], insertion["edge map"])
    assert math.isnan(scores.means("randomization")["random map"])
    assert scores.best("deletion") == scores.best("insertion") == "hirescam @ features"
    assert scores.best("randomization") in rows[:2]  # the baselines have no randomisation correlation
    table = scores.table()  # one small table per measure: methods × layers, the baselines below, the best starred
    assert "6 images, 8 steps" in table.splitlines()[0]
    blocks = table.split("\n\n")[1:]
    assert [block.splitlines()[0].split()[0] for block in blocks] == ["deletion", "insertion", "randomisation"]
    for block, measure in zip(blocks, ["deletion", "insertion", "randomization"]):
        lines = block.splitlines()
        assert lines[1].split() == ["method", "features"]
        assert [line.split()[0] for line in lines[2:4]] == ["hirescam", "gradcam"]
        value, shown = scores.means(measure)["hirescam @ features"], lines[2].split()[1].rstrip("*")
        assert shown == "n/a" if math.isnan(value) else float(shown) == pytest.approx(value, abs=5e-3)
        assert (lines[2].split()[1].endswith("*")) == (scores.best(measure) == "hirescam @ features")
    assert "random map" in blocks[0] and "edge map" in blocks[1] and "random map" not in blocks[2]
    first, second = scores.subset(slice(0, 3)), scores.subset(slice(3, 6))
    assert first.per_image("deletion")["edge map"].shape == (3,) and first.insertion["random map"].targets.shape == (3,)
    assert ranking_agreement(scores, scores) == pytest.approx(1.0)
    assert -1 <= ranking_agreement(first, second, "insertion") <= 1
