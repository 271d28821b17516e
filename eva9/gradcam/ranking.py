"""Ranking the CAM family on one network: per method and layer, the deletion and insertion areas and the
randomisation correlation of each image, next to the random and the edge map, and how well two halves of the
images agree on the ranking."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from .checks import _cams_in_batches, map_rank_correlation, randomization_check
from .curves import FaithfulnessCurve, deletion_curve, edge_map, insertion_curve, random_map

__all__ = ["Faithfulness", "faithfulness_scores", "ranking_agreement"]

MEASURES = ("deletion", "insertion", "randomization")
"""The three columns, and which way is better: deletion (lower), insertion (higher), randomisation (lower)."""


BASELINES = ("random map", "random 4×4 blobs", "edge map")
"""The rows of the two maps every method must beat."""


class Faithfulness(NamedTuple):
    """Row ("gradcam @ layer4", …, "random map", "edge map") → its deletion and insertion curves over the images,
    and each image's randomisation correlation (NaN for the baselines, which do not depend on the weights)."""

    deletion: dict[str, FaithfulnessCurve]
    insertion: dict[str, FaithfulnessCurve]
    randomization: dict[str, torch.Tensor]
    steps: int

    def subset(self, index) -> Faithfulness:
        """The same scores for some of the images (a slice or an index tensor)."""

        def part(curve: FaithfulnessCurve) -> FaithfulnessCurve:
            return curve._replace(probabilities=curve.probabilities[index], targets=curve.targets[index])

        return Faithfulness(
            {row: part(c) for row, c in self.deletion.items()},
            {row: part(c) for row, c in self.insertion.items()},
            {row: v[index] for row, v in self.randomization.items()},
            self.steps,
        )

    def per_image(self, measure: str) -> dict[str, torch.Tensor]:
        """Row → each image's value (B,) of one measure: an area under a curve, or the randomisation correlation."""
        if measure not in MEASURES:
            raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
        if measure == "randomization":
            return dict(self.randomization)
        return {row: curve.areas for row, curve in getattr(self, measure).items()}

    def means(self, measure: str) -> dict[str, float]:
        """Row → the mean of one measure over the images (randomisation: over images whose maps are not empty)."""
        values = self.per_image(measure)
        return {row: float(np.nanmean(v.numpy())) if not v.isnan().all() else math.nan for row, v in values.items()}

    def best(self, measure: str) -> str:
        """The row with the best mean ``measure``: the lowest deletion area or correlation, the highest insertion."""
        means = {row: value for row, value in self.means(measure).items() if not math.isnan(value)}
        return (max if measure == "insertion" else min)(means, key=lambda row: means[row])

    def curves_at(self, layer: str) -> tuple[dict[str, FaithfulnessCurve], dict[str, FaithfulnessCurve]]:
        """The deletion and the insertion curves of every method at ``layer``, and of the baselines."""
        keep = [row for row in self.deletion if row.endswith(f" @ {layer}") or row in BASELINES]
        return {row: self.deletion[row] for row in keep}, {row: self.insertion[row] for row in keep}

    def to_dict(self) -> dict:
        """The scores as plain JSON values (NaN as None): each row's curves and correlations, image by image."""

        def curve(c: FaithfulnessCurve) -> dict:
            return {
                "fractions": c.fractions.tolist(),
                "probabilities": c.probabilities.tolist(),
                "targets": c.targets.tolist(),
            }

        return {
            "steps": self.steps,
            "deletion": {row: curve(c) for row, c in self.deletion.items()},
            "insertion": {row: curve(c) for row, c in self.insertion.items()},
            "randomization": {
                row: [None if math.isnan(v) else v for v in t.tolist()] for row, t in self.randomization.items()
            },
        }

    @classmethod
    def from_dict(cls, raw: dict, source: str = "scores") -> Faithfulness:
        """Scores read back from :meth:`to_dict`'s values, checked: the same rows in each measure, every curve
        of ``steps + 1`` probabilities in [0, 1] for the same images; a ``ValueError`` naming ``source`` if not."""
        try:
            steps, rows = int(raw["steps"]), list(raw["deletion"])
            if not (0 < steps <= 1000 and 0 < len(rows) <= 1000) or any(set(raw[m]) != set(rows) for m in MEASURES):
                raise ValueError("the measures must hold the same rows")
            parts = {kind: {row: _curve(kind, raw[kind][row], steps) for row in rows} for kind in MEASURES[:2]}
            randomization = {
                row: torch.tensor([math.nan if v is None else float(v) for v in raw["randomization"][row]],
                                  dtype=torch.float64)
                for row in rows
            }  # fmt: skip
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{source}: not a valid ranking of the CAM family ({error})") from None
        images = {len(t) for t in randomization.values()} | {
            len(c.targets) for curves in parts.values() for c in curves.values()
        }
        if len(images) != 1:
            raise ValueError(f"{source}: not a valid ranking of the CAM family (rows hold different image counts)")
        return cls(parts["deletion"], parts["insertion"], randomization, steps)

    def table(self) -> str:
        """One small table per measure, methods × layers (the best cell starred), with the baselines' values
        below the deletion and insertion tables: easier to read than one row per method and layer."""
        images = len(next(iter(self.randomization.values())))
        maps = [row for row in self.deletion if " @ " in row]
        methods = list(dict.fromkeys(row.partition(" @ ")[0] for row in maps))
        layers = list(dict.fromkeys(row.partition(" @ ")[2] for row in maps))
        width = max([len("method"), *map(len, methods)])
        blocks = [f"{images} images, {self.steps} steps; * the best of each measure"]
        for measure, heading in zip(MEASURES, _HEADINGS):
            means, best = self.means(measure), self.best(measure)
            lines = [heading, f"{'method':<{width}}" + "".join(f"{layer:>10}" for layer in layers)]
            for method in methods:
                cells = []
                for layer in layers:
                    row = f"{method} @ {layer}"
                    value = means.get(row, math.nan)
                    text = (
                        "n/a"
                        if math.isnan(value)
                        else f"{value:+.2f}"
                        if measure == "randomization"
                        else f"{value:.3f}"
                    )
                    cells.append(f"{text + ('*' if row == best else ' '):>10}")
                lines.append(f"{method:<{width}}" + "".join(cells))
            if measure != "randomization":
                lines.append("baselines: " + ", ".join(f"{row} {means[row]:.3f}" for row in BASELINES if row in means))
            blocks.append("\n".join(lines))
        return "\n\n".join(blocks)


_HEADINGS = (
    "deletion area ↓ (lower is better)",
    "insertion area ↑ (higher is better)",
    "randomisation r ↓ (rank correlation of the maps of the trained and the random network)",
)


def _curve(kind: str, raw: dict, steps: int) -> FaithfulnessCurve:
    fractions = torch.tensor(raw["fractions"], dtype=torch.float64)
    probabilities = torch.tensor(raw["probabilities"], dtype=torch.float64)
    targets = torch.tensor(raw["targets"], dtype=torch.int64)
    if fractions.shape != (steps + 1,) or probabilities.ndim != 2 or probabilities.shape[1] != steps + 1:
        raise ValueError(f"a {kind} curve must have {steps + 1} fractions and probabilities per image")
    if len(targets) != len(probabilities) or not bool(((probabilities >= 0) & (probabilities <= 1)).all()):
        raise ValueError(f"a {kind} curve needs one target per image and probabilities in [0, 1]")
    return FaithfulnessCurve(kind, fractions, probabilities, targets)


def faithfulness_scores(
    model: nn.Module,
    images: torch.Tensor,
    methods: Sequence[str] = ("gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam"),
    layers: Sequence[str] = ("layer1", "layer2", "layer3", "layer4"),
    *,
    steps: int = 10,
    seed: int = 0,
    batch_size: int = 64,
) -> Faithfulness:
    """Deletion and insertion areas (:func:`deletion_curve`, :func:`insertion_curve`) and the randomisation
    correlation (:func:`randomization_check`, every weight re-drawn from ``seed``) of each method at each layer,
    for the class the model predicts, plus the areas of two random maps (from ``seed``; per pixel, and blobs of a
    ``layer4`` map's 4×4 grain) and of the Sobel edge map."""
    targets = None
    scores: dict[str, dict] = {name: {} for name in MEASURES}
    for method in methods:
        cams = _cams_in_batches(model, images, list(layers), targets, batch_size, method)
        targets = cams.targets.cpu()
        check = randomization_check(model, images, list(layers), targets=targets, seed=seed, method=method)
        for layer in layers:
            row = f"{method} @ {layer}"
            _score(scores, row, model, images, cams[layer], targets, steps, batch_size)
            scores["randomization"][row] = check.correlations[layer]
    batch, height, width = images[:, 0].shape
    shape = (int(batch), int(height), int(width))
    baselines = dict(zip(BASELINES, [random_map(shape, seed), random_map(shape, seed, (4, 4)), edge_map(images)]))
    for row, maps in baselines.items():
        _score(scores, row, model, images, maps, targets, steps, batch_size)
        scores["randomization"][row] = torch.full((images.shape[0],), math.nan, dtype=torch.float64)
    return Faithfulness(**scores, steps=steps)


def _score(scores, row, model, images, maps, targets, steps, batch_size) -> None:
    kwargs = {"targets": targets, "steps": steps, "batch_size": batch_size}
    scores["deletion"][row] = deletion_curve(model, images, maps, **kwargs)
    scores["insertion"][row] = insertion_curve(model, images, maps, **kwargs)


def ranking_agreement(first: Faithfulness, second: Faithfulness, measure: str = "deletion") -> float:
    """Spearman correlation between the rows' mean ``measure`` in two sets of images (1: the same ranking)."""
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
    a, b = first.means(measure), second.means(measure)
    rows = [row for row in a if row in b and not (math.isnan(a[row]) or math.isnan(b[row]))]
    means = [torch.tensor([values[row] for row in rows]).view(1, 1, -1) for values in (a, b)]
    return float(map_rank_correlation(*means)[0])
