"""eva9.transforms: each augmentation does to the pixels what it says (Albumentations 2.x argument names)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import fake_image

import eva9.transforms as T
from eva9.data import MEAN, STD, cifar10, per_class_subset

IMAGE = fake_image(3, 7)  # uint8 32×32×3, values 1..254


def normalized(image: np.ndarray) -> torch.Tensor:
    """What Normalize + ToTensorV2 should give for ``image``, computed by hand."""
    x = torch.from_numpy(image).permute(2, 0, 1).double() / 255
    return (
        (x - torch.tensor(MEAN, dtype=torch.float64).view(3, 1, 1))
        / torch.tensor(STD, dtype=torch.float64).view(3, 1, 1)
    ).float()


def seeded(pipeline, seed: int = 0):
    pipeline.set_random_seed(seed)
    return pipeline


def test_test_pipeline_is_normalize_only_and_deterministic():
    pipeline = T.test_transforms()
    a, b = pipeline(image=IMAGE)["image"], pipeline(image=IMAGE)["image"]
    assert a.dtype == torch.float32 and a.shape == (3, 32, 32)
    assert torch.equal(a, b)
    torch.testing.assert_close(a, normalized(IMAGE), atol=1e-5, rtol=0)


def test_flip_with_p1_mirrors_the_image_left_right():
    pipeline = T.train_transforms(pad=0, flip_p=1.0, cutout_p=0.0)
    out = pipeline(image=IMAGE)["image"]
    torch.testing.assert_close(out, normalized(IMAGE[:, ::-1].copy()), atol=1e-5, rtol=0)
    assert not torch.allclose(out, normalized(IMAGE))


def test_with_p0_nothing_changes():
    out = T.train_transforms(pad=0, flip_p=0.0, cutout_p=0.0)(image=IMAGE)["image"]
    torch.testing.assert_close(out, normalized(IMAGE), atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", [16, 8])
def test_cutout_is_one_square_hole_filled_with_the_mean(size):
    pipeline = seeded(T.train_transforms(pad=0, flip_p=0.0, cutout_p=1.0, cutout_size=size))
    reference = normalized(IMAGE)
    for _ in range(5):
        out = pipeline(image=IMAGE)["image"]
        changed = (out - reference).abs().amax(0) > 1e-4  # pixels the cutout touched
        rows, cols = torch.nonzero(changed, as_tuple=True)
        assert changed.sum() == size * size, "exactly one size×size hole"
        assert rows.max() - rows.min() + 1 == size and cols.max() - cols.min() + 1 == size
        hole = out[:, changed]
        assert hole.abs().max() < 0.01, "the mean fill is ~0 in every channel after Normalize"
        torch.testing.assert_close(out[:, ~changed], reference[:, ~changed], atol=1e-5, rtol=0)


def test_cutout_happens_with_probability_cutout_p():
    pipeline = seeded(T.train_transforms(pad=0, flip_p=0.0, cutout_p=0.5))
    reference = normalized(IMAGE)
    holed = sum(not torch.allclose(pipeline(image=IMAGE)["image"], reference, atol=1e-4) for _ in range(200))
    assert 60 < holed < 140


@pytest.mark.parametrize("crop", [32, 24])
def test_crop_is_a_shifted_window_of_the_image_reflect_padded_by_pad(crop):
    pipeline = seeded(T.train_transforms(pad=4, crop=crop, flip_p=0.0, cutout_p=0.0, cutout_size=8))
    padded = np.pad(IMAGE, ((4, 4), (4, 4), (0, 0)), mode="reflect")  # torchvision's "reflect" padding
    last = 40 - crop  # the largest offset of a crop×crop window in the 40×40 padded image
    windows = {
        (dy, dx): normalized(padded[dy : dy + crop, dx : dx + crop]) for dy in range(last + 1) for dx in range(last + 1)
    }
    offsets = []
    for _ in range(30):
        out = pipeline(image=IMAGE)["image"]
        assert out.shape == (3, crop, crop)
        match = [offset for offset, window in windows.items() if torch.allclose(out, window, atol=1e-5)]
        assert len(match) == 1, "every crop is one window of the reflect-padded image"
        offsets.append(match[0])
    assert len(set(offsets)) > 10, "the crop position is random"
    assert any(dy < 4 or dx < 4 or dy > last - 4 or dx > last - 4 for dy, dx in offsets), "crops reach into the padding"


def test_same_seed_same_augmentations_different_seed_different():
    def draws(seed):
        pipeline = seeded(T.train_transforms(), seed)
        return torch.stack([pipeline(image=IMAGE)["image"] for _ in range(8)])

    assert torch.equal(draws(1), draws(1))
    assert not torch.equal(draws(1), draws(2))


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="cutout_size"):
        T.train_transforms(cutout_size=40)
    with pytest.raises(ValueError, match="pad"):
        T.train_transforms(pad=-1)


def test_denormalize_inverts_normalize_for_chw_and_bchw():
    x = T.test_transforms()(image=IMAGE)["image"]
    expected = torch.from_numpy(IMAGE).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(T.denormalize(x), expected, atol=1e-6, rtol=0)
    batch = torch.stack([x, x.flip(-1)])
    torch.testing.assert_close(T.denormalize(batch), torch.stack([expected, expected.flip(-1)]), atol=1e-6, rtol=0)
    assert T.denormalize(torch.full((3, 2, 2), -100.0)).min() == 0.0, "clamped to [0, 1]"
    with pytest.raises(ValueError, match="CHW"):
        T.denormalize(torch.zeros(32, 32))


def test_pipelines_standardize_real_images(cifar_root):
    images = per_class_subset(cifar10("train", root=cifar_root), 50, seed=0)
    for pipeline, tolerance in ((T.test_transforms(), 0.05), (seeded(T.train_transforms()), 0.1)):
        images.transform = pipeline
        batch = torch.stack([images[i][0] for i in range(len(images))])
        assert batch.dtype == torch.float32 and batch.shape == (500, 3, 32, 32)
        per_channel = batch.transpose(0, 1).flatten(1)
        torch.testing.assert_close(per_channel.mean(1), torch.zeros(3), atol=tolerance, rtol=0)
        torch.testing.assert_close(per_channel.std(1), torch.ones(3), atol=tolerance, rtol=0)


def _decisions(pipeline, reseed_each: bool, n: int = 1200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image: flipped (0/1), crop row offset and crop column offset (0..8), read back from the pixels."""
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    coded = np.stack([rows * 8, cols * 8, np.full_like(rows, 128)], axis=-1).astype(np.uint8)  # pixel = its place
    pipeline.set_random_seed(0)
    flips, dy, dx = [], [], []
    for i in range(n):
        if reseed_each:
            pipeline.set_random_seed(i)  # consecutive seeds, as hard a case as any
        out = (T.denormalize(pipeline(image=coded)["image"]) * 255).round().long()
        flipped = bool(out[1, 16, 17] < out[1, 16, 16])
        # reflect padding by 4, then a 32×32 window at (dy, dx): output (16, c) shows source (12 + dy, c - 4 + dx)
        flips.append(flipped)
        dy.append(int(out[0, 16, 16]) // 8 - 12)
        dx.append(int(out[1, 16, 16 if not flipped else 15]) // 8 - 12)
    return np.array(flips, float), np.array(dy, float), np.array(dx, float)


@pytest.mark.parametrize("reseed_each", [False, True], ids=["seeded once", "reseeded per image"])
def test_flip_and_crop_decisions_are_uncorrelated(reseed_each):
    flips, dy, dx = _decisions(T.train_transforms(cutout_p=0.0), reseed_each)
    assert set(dy) == set(dx) == set(range(9)) and 0.4 < flips.mean() < 0.6
    for lag in (0, 1, 2):  # the same image, and the images before it
        for offsets in (dy, dx):
            small = (offsets < 4).astype(float)
            a, b = flips[lag:], small[: len(small) - lag]
            assert abs(np.corrcoef(a, b)[0, 1]) < 0.12, f"flip correlates with a crop offset at lag {lag}"
            assert abs(np.corrcoef(flips[lag:], offsets[: len(offsets) - lag])[0, 1]) < 0.12
    assert abs(np.corrcoef(dy, dx)[0, 1]) < 0.12, "row and column offsets come from independent draws"


def test_listing_names_every_step_in_order_one_per_line_within_the_width():
    pipeline = T.train_transforms(cutout_size=12)
    text = T.listing(pipeline, width=60)
    heads = [line for line in text.splitlines() if not line.startswith("  ")]
    assert [head.split("(")[0] for head in heads] == [type(step).__name__ for step in pipeline]
    assert max(len(line) for line in text.splitlines()) <= 60
    assert "hole_height_range=(12,12)" in text.replace("\n  ", " ")
    assert T.listing(T.test_transforms()).splitlines()[0].startswith("Normalize(")


def test_listing_refuses_a_width_too_narrow_to_read():
    with pytest.raises(ValueError, match="width"):
        T.listing(T.test_transforms(), width=5)


def test_importing_eva9_asks_no_server_for_anything():
    """Albumentations checks PyPI for a newer version on import unless told not to; eva9 tells it not to."""
    import os
    import subprocess
    import sys

    script = (
        "import sys\n"
        "hosts = []\n"
        "sys.addaudithook(lambda event, args: hosts.append(str(args[0])) "
        "if event in ('socket.getaddrinfo', 'socket.gethostbyname') else None)\n"
        "import eva9.transforms, eva9.photos\n"
        "print(sorted(set(hosts)))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"importing eva9 looked up {done.stdout.strip()}"


def _by_hand(image: np.ndarray, shift: tuple[int, int], flipped: bool, holes) -> torch.Tensor:
    """The train pipeline's output for ``image`` with these draws, computed with NumPy: what the draws claim."""
    right, down = shift
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0)), mode="reflect")
    out = padded[4 - down : 36 - down, 4 - right : 36 - right].copy()
    if flipped:
        out = out[:, ::-1].copy()
    for x1, y1, x2, y2 in holes:
        out[y1:y2, x1:x2] = [round(255 * m) for m in MEAN]
    return normalized(out)


@pytest.mark.parametrize("reseed_each", [False, True], ids=["seeded once", "reseeded per image"])
def test_draw_reports_the_shift_flip_and_hole_that_made_the_pixels(reseed_each):
    pipeline = seeded(T.train_transforms())
    seen = set()
    for i in range(150):
        if reseed_each:
            pipeline.set_random_seed(i)
        d = T.draw(pipeline, IMAGE)
        assert all(-4 <= s <= 4 for s in d.shift) and len(d.holes) <= 1
        for x1, y1, x2, y2 in d.holes:
            assert x2 - x1 == y2 - y1 == 16 and 0 <= x1 and x2 <= 32 and 0 <= y1 and y2 <= 32
        torch.testing.assert_close(d.image, _by_hand(IMAGE, d.shift, d.flipped, d.holes), atol=1e-5, rtol=0)
        seen.add((d.flipped, bool(d.holes), d.shift[0] > 0, d.shift[1] < 0))
    assert len(seen) == 16, "flipped or not, holed or not, moved right or left, up or down: all turn up"
    assert pipeline.save_applied_params is False, "the caller's pipeline is left as it was"


def test_draw_of_a_pipeline_without_random_steps_reports_nothing_done():
    d = T.draw(T.test_transforms(), IMAGE)
    assert d.shift == (0, 0) and not d.flipped and d.holes == ()
    torch.testing.assert_close(d.image, normalized(IMAGE), atol=1e-5, rtol=0)


@pytest.mark.parametrize("reseed_each", [False, True], ids=["seeded once", "reseeded per image"])
def test_the_default_pipeline_flips_and_cuts_a_hole_each_half_the_time_independently(reseed_each):
    # what the augmentations chapter tells the reader: p = 0.5 each, independent of each other
    pipeline = seeded(T.train_transforms())
    draws = []
    for i in range(2000):
        if reseed_each:
            pipeline.set_random_seed(i)
        draws.append(T.draw(pipeline, IMAGE))
    flipped = np.array([d.flipped for d in draws])
    holed = np.array([bool(d.holes) for d in draws])
    assert 0.45 < flipped.mean() < 0.55 and 0.45 < holed.mean() < 0.55
    assert 0.2 < (flipped & holed).mean() < 0.3 and abs(np.corrcoef(flipped, holed)[0, 1]) < 0.06
