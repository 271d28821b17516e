"""Augmentation on the training device (eva9.data.device_batches): the same pixels as the Albumentations pipeline
for the same draws, the same distributions of draws, and per-image reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eva9.data import EpochSampler
from eva9.data.device_batches import (
    DeviceBatches,
    Draws,
    augment_batch,
    augmentation_of,
    draws_from_seeds,
)
from eva9.transforms import train_transforms

# Chi-square critical values at a false-alarm rate of 0.001 per test (scipy.stats.chi2.ppf(0.999, df)).
CHI2_999 = {1: 10.828, 8: 26.124, 16: 39.252}


def _albumentations_with(image: np.ndarray, y: int, x: int, flip: bool, hole: tuple[int, int] | None) -> np.ndarray:
    """The train pipeline's own steps applied to ``image`` with the given draws (no randomness left)."""
    pad, crop, flipper, cutout, normalize, to_tensor = train_transforms().transforms
    out = pad(image=image)["image"]  # deterministic
    out = crop.apply(out, crop_coords=(x, y, x + crop.width, y + crop.height))
    if flip:
        out = flipper.apply(out)
    if hole is not None:
        (hy, hx), size = hole, cutout.hole_height_range[0]
        out = cutout.apply(out, holes=np.array([[hx, hy, hx + size, hy + size]]), seed=0)
    out = normalize.apply(out, shape=out.shape)
    return to_tensor(image=out)["image"].numpy()


def _draws(**values: list[int]) -> Draws:
    return Draws(*(torch.tensor(values[name]) for name in Draws._fields))


def test_given_the_same_offset_flip_and_hole_the_device_batch_equals_the_albumentations_pipeline():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    cases = [  # (crop row, crop column, flip, hole corner or None): corners of every range
        (0, 0, False, None),
        (8, 8, True, (0, 0)),
        (0, 8, True, (16, 16)),
        (8, 0, False, (16, 0)),
        (3, 5, True, (7, 11)),
        (4, 4, False, (0, 16)),
    ]
    draws = _draws(
        crop_y=[c[0] for c in cases],
        crop_x=[c[1] for c in cases],
        flip=[int(c[2]) for c in cases],
        hole=[int(c[3] is not None) for c in cases],
        hole_y=[c[3][0] if c[3] else 0 for c in cases],
        hole_x=[c[3][1] if c[3] else 0 for c in cases],
    )
    batch = augment_batch(torch.from_numpy(images).permute(0, 3, 1, 2), draws, augmentation_of())
    assert batch.shape == (6, 3, 32, 32) and batch.dtype == torch.float32
    for i, (y, x, flip, hole) in enumerate(cases):
        expected = _albumentations_with(images[i], y, x, flip, hole)
        np.testing.assert_allclose(batch[i].numpy(), expected, rtol=0, atol=1e-5)


def test_the_recipe_is_read_from_the_train_pipeline_and_other_pipelines_are_refused():
    aug = augmentation_of(train_transforms(pad=2, cutout_size=8, cutout_p=0.25, flip_p=0.1))
    assert (aug.pad, aug.crop, aug.cutout_size, aug.cutout_p, aug.flip_p) == (2, 32, 8, 0.25, 0.1)
    assert aug.fill == (125.0, 123.0, 114.0)  # the mean colour in 0..255, as the pipeline fills
    from eva9.transforms import test_transforms

    with pytest.raises(ValueError, match="reproduces a pipeline of"):
        augmentation_of(test_transforms())


def _chi2(counts: np.ndarray, expected: np.ndarray) -> float:
    return float(((counts - expected) ** 2 / expected).sum())


def test_draws_follow_the_pipelines_distributions():
    """Goodness of fit of 40,000 draws to the distributions Albumentations draws from: crop offsets uniform on 0..8,
    hole corners uniform on 0..16, flip and hole Bernoulli(0.5). Six chi-square tests at a false-alarm rate of
    0.001 each (at most 0.6 % that any fails by chance); the seeds are fixed, so the outcome does not vary."""
    n, aug = 40_000, augmentation_of()
    seeds = [seed for _, seed in EpochSampler(n, seed=3)]
    draws = draws_from_seeds(seeds, aug)
    for name, values in (("crop_y", 9), ("crop_x", 9), ("hole_y", 17), ("hole_x", 17), ("flip", 2), ("hole", 2)):
        counts = np.bincount(getattr(draws, name).numpy(), minlength=values)
        assert len(counts) == values, name
        statistic = _chi2(counts, np.full(values, n / values))
        assert statistic < CHI2_999[values - 1], (name, statistic, counts)


def _albumentations_draws(n: int, seed: int) -> dict[str, np.ndarray]:
    """The parameters the train pipeline applied to ``n`` images seeded as its loader seeds them."""
    pipeline = train_transforms()
    pipeline.save_applied_params = True
    image = np.zeros((32, 32, 3), np.uint8)
    names = ("crop_y", "crop_x", "flip", "hole", "hole_y", "hole_x")
    out: dict[str, list[int]] = {name: [] for name in names}
    for _, image_seed in EpochSampler(n, seed=seed):
        pipeline.set_random_seed(image_seed)
        applied = dict(pipeline(image=image)["applied_transforms"])
        x_min, y_min = applied["RandomCrop"]["crop_coords"][:2]
        holes = applied.get("CoarseDropout", {}).get("holes")
        for name, value in zip(names, (y_min, x_min, "HorizontalFlip" in applied, holes is not None)):
            out[name].append(int(value))
        if holes is not None:  # corners only where a hole was cut, as in the device's draws below
            out["hole_x"].append(int(holes[0][0]))
            out["hole_y"].append(int(holes[0][1]))
    return {name: np.array(values) for name, values in out.items()}


def test_draws_match_albumentations_own_draws_in_a_two_sample_test():
    """The pipeline's applied parameters over 4,000 seeded images against the device's draws for 4,000 other seeds:
    a two-sample chi-square test of homogeneity per quantity (six tests, false-alarm rate 0.001 each)."""
    n = 4_000
    theirs = _albumentations_draws(n, seed=11)
    ours = draws_from_seeds([seed for _, seed in EpochSampler(n, seed=12)], augmentation_of())
    with_hole = ours.hole.numpy().astype(bool)
    for name, values in (("crop_y", 9), ("crop_x", 9), ("flip", 2), ("hole", 2), ("hole_y", 17), ("hole_x", 17)):
        mine = getattr(ours, name).numpy()
        mine = mine[with_hole] if name.startswith("hole_") else mine
        table = np.stack([np.bincount(theirs[name], minlength=values), np.bincount(mine, minlength=values)])
        table = table.astype(float)
        expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
        statistic = _chi2(table, expected)
        assert statistic < CHI2_999[values - 1], (name, statistic, table)


def test_each_images_draws_depend_on_seed_epoch_and_index_alone():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(40, 32, 32, 3), dtype=np.uint8)
    labels = list(range(10)) * 4

    def epoch(batch_size: int, number: int) -> dict[int, torch.Tensor]:
        """Each image's augmented pixels in epoch ``number``, by image index."""
        batches = DeviceBatches(images, labels, batch_size=batch_size, seed=5, device="cpu")
        batches.sampler.set_epoch(number)
        pixels = torch.cat([x for x, _ in batches])
        batches.sampler.set_epoch(number)
        indices = [index for index, _ in batches.sampler][: len(pixels)]
        return {index: pixels[k] for k, index in enumerate(indices)}

    first, again, other = epoch(8, 2), epoch(20, 2), epoch(8, 3)
    assert first.keys() == again.keys()
    assert all(torch.equal(first[i], again[i]) for i in first)  # the batch size changes no pixel
    assert not all(torch.equal(first[i], other[i]) for i in first)  # another epoch draws again


def test_batches_are_normalised_labelled_and_the_partial_batch_is_dropped():
    images = np.full((25, 32, 32, 3), 200, np.uint8)
    batches = DeviceBatches(images, [3] * 25, batch_size=10, device="cpu")
    got = list(batches)
    assert len(batches) == 2 and len(got) == 2
    x, y = got[0]
    assert x.shape == (10, 3, 32, 32) and torch.equal(y, torch.full((10,), 3))
    aug = augmentation_of()
    plain = (200 - 255 * torch.tensor(aug.mean)) / (255 * torch.tensor(aug.std))
    hole = (torch.tensor(aug.fill) - 255 * torch.tensor(aug.mean)) / (255 * torch.tensor(aug.std))
    for channel in range(3):  # a constant image: every pixel is either the image's value or the hole's
        values = x[:, channel]
        assert torch.all(torch.isclose(values, plain[channel]) | torch.isclose(values, hole[channel]))
    with pytest.raises(ValueError, match="batch_size must lie in"):
        DeviceBatches(images, [3] * 25, batch_size=26, device="cpu")
