"""Checking GradCAM: maps change when the weights are randomised, and the pixels a map rates highest matter most."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from eva9.gradcam import (
    deletion_test,
    map_rank_correlation,
    random_blob_mask,
    random_pixel_mask,
    randomization_check,
    randomized_copy,
    top_pixel_mask,
)

# ------------------------------------------------------------------------------------------------------ models


class SquareNet(nn.Module):
    """Two conv layers, then a mean over the left and the right half and a linear head: 'which half is it in'."""

    def __init__(self) -> None:
        super().__init__()
        self.layer1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.layer2(self.layer1(x)), (1, 2)).flatten(1))


def square_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise with one bright 4×4 square; the label says whether it lies in the left (0) or right (1) half."""
    generator = torch.Generator().manual_seed(seed)
    images = 0.3 * torch.randn(n, 3, 16, 16, generator=generator)
    labels = torch.randint(0, 2, (n,), generator=generator)
    for i in range(n):
        row = int(torch.randint(0, 13, (1,), generator=generator))
        col = int(torch.randint(0, 5, (1,), generator=generator)) + 8 * int(labels[i])
        images[i, :, row : row + 4, col : col + 4] += 2.0
    return images, labels


@pytest.fixture(scope="module")
def trained_square_net() -> SquareNet:
    """A SquareNet trained to 100% test accuracy on square_images (a few seconds on a CPU)."""
    torch.manual_seed(0)
    net = SquareNet()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    images, labels = square_images(512, seed=0)
    for _ in range(150):
        batch = torch.randint(0, 512, (64,))
        loss = F.cross_entropy(net(images[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    test_images, test_labels = square_images(64, seed=100)
    assert (net(test_images).argmax(1) == test_labels).all()
    return net


class CornerFeatures(nn.Module):
    """One feature map: the pixel's mean colour (ReLU'd) inside the top-left 8×8 corner, zero elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, kernel_size=1, bias=False)
        nn.init.constant_(self.conv.weight, 1 / 3)
        corner = torch.zeros(1, 1, 32, 32)
        corner[..., :8, :8] = 1
        self.register_buffer("corner", corner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x)) * self.corner


class CornerNet(nn.Module):
    """Class 0's score is 10 × the mean brightness of the top-left 8×8 corner; class 1's is always 0.

    ``layer4`` sees only that corner, so its GradCAM map for class 0 is the corner's brightness and zero elsewhere.
    """

    def __init__(self) -> None:
        super().__init__()
        self.layer4 = CornerFeatures()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = 10 * self.layer4(x).sum(dim=(1, 2, 3)) / 64
        return torch.stack([score, torch.zeros_like(score)], dim=1)


def bright_images(n: int = 6, seed: int = 0) -> torch.Tensor:
    """Normalised images with every value in [0.5, 1.5], so CornerNet is sure of class 0."""
    return 0.5 + torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------ rank correlation


def test_rank_correlation_is_one_for_equal_or_monotonically_related_maps_and_minus_one_for_reversed():
    maps = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(map_rank_correlation(maps, maps), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(map_rank_correlation(maps, maps.square() + 5), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(map_rank_correlation(maps, -maps), -torch.ones(3, dtype=torch.float64))


def test_rank_correlation_matches_scipy_spearman_with_ties_and_is_nan_for_a_constant_map():
    stats = pytest.importorskip("scipy.stats")
    generator = torch.Generator().manual_seed(1)
    first = torch.randint(0, 4, (4, 6, 6), generator=generator).float()  # many ties, as ReLU'd maps have
    second = torch.randint(0, 5, (4, 6, 6), generator=generator).float()
    expected = [stats.spearmanr(a.flatten(), b.flatten()).statistic for a, b in zip(first, second)]
    assert np.allclose(map_rank_correlation(first, second).numpy(), expected)
    constant = map_rank_correlation(torch.zeros(1, 4, 4), torch.rand(1, 4, 4))
    assert torch.isnan(constant).all()


def test_rank_correlation_refuses_batches_of_different_shapes():
    with pytest.raises(ValueError, match="B×H×W"):
        map_rank_correlation(torch.rand(2, 4, 4), torch.rand(2, 4, 5))


# ------------------------------------------------------------------------------------------ randomised copy


def test_randomized_copy_reinitialises_only_the_named_layers_and_leaves_the_model_alone(trained_square_net):
    before = {k: v.clone() for k, v in trained_square_net.state_dict().items()}
    copy = randomized_copy(trained_square_net, ["fc", "layer2"], seed=3)
    assert all(torch.equal(v, before[k]) for k, v in trained_square_net.state_dict().items())
    assert torch.equal(copy.layer1[0].weight, before["layer1.0.weight"])
    assert not torch.equal(copy.layer2[0].weight, before["layer2.0.weight"])
    assert not torch.equal(copy.fc.weight, before["fc.weight"])


def test_randomized_copy_is_the_same_for_the_same_seed_and_leaves_the_global_random_state():
    net = SquareNet()
    state = torch.random.get_rng_state()
    first, second, other = randomized_copy(net, seed=5), randomized_copy(net, seed=5), randomized_copy(net, seed=6)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert not torch.equal(first.layer1[0].weight, other.layer1[0].weight)


def test_randomized_copy_names_the_choices_for_an_unknown_layer():
    with pytest.raises(ValueError, match="no layer named 'layer9'.*layer1"):
        randomized_copy(SquareNet(), ["layer9"])


# --------------------------------------------------------------------------------------- randomisation check


def test_randomising_nothing_gives_correlation_one_at_every_layer(trained_square_net):
    images, _ = square_images(16, seed=7)
    check = randomization_check(trained_square_net, images, ["layer1", "layer2"], randomize=[])
    assert check.mean() == pytest.approx({"layer1": 1.0, "layer2": 1.0})
    assert check.correlations["layer2"].shape == (16,)


def test_a_trained_networks_maps_correlate_little_with_its_randomised_copys(trained_square_net):
    images, labels = square_images(32, seed=8)
    check = randomization_check(trained_square_net, images, ["layer1", "layer2"], seed=0, batch_size=10)
    assert torch.equal(check.targets, labels)  # the target is the trained model's (here correct) prediction
    for layer, mean in check.mean().items():
        assert mean < 0.5, f"{layer}: maps of the trained and the random model correlate {mean:.2f}"


def test_randomisation_check_leaves_the_model_unchanged_and_in_its_mode(trained_square_net):
    before = {k: v.clone() for k, v in trained_square_net.state_dict().items()}
    trained_square_net.train()
    randomization_check(trained_square_net, square_images(4, seed=9)[0], "layer2")
    assert trained_square_net.training
    assert all(torch.equal(v, before[k]) for k, v in trained_square_net.state_dict().items())
    trained_square_net.eval()


# ----------------------------------------------------------------------------------------------- deletion


def test_pixel_masks_blank_exactly_the_fraction_of_pixels_of_each_image():
    maps = torch.rand(5, 32, 32, generator=torch.Generator().manual_seed(0))
    top = top_pixel_mask(maps, 0.2)
    scattered = random_pixel_mask((5, 32, 32), 0.2, seed=1)
    blobs = random_blob_mask((5, 32, 32), 0.2, cells=(4, 4), seed=1)
    assert top.shape == scattered.shape == blobs.shape == (5, 32, 32)
    for mask in (top, scattered, blobs):
        assert mask.flatten(1).sum(1).tolist() == [205] * 5  # round(0.2 × 1024)


def test_top_pixel_mask_picks_the_highest_pixels():
    maps = torch.rand(2, 10, 10, generator=torch.Generator().manual_seed(2))
    mask = top_pixel_mask(maps, 0.3)
    for image, chosen in zip(maps, mask):
        assert image[chosen].min() >= image[~chosen].max()


def test_random_pixel_mask_is_the_same_for_the_same_seed_and_differs_for_another():
    assert torch.equal(random_pixel_mask((2, 8, 8), 0.5, seed=3), random_pixel_mask((2, 8, 8), 0.5, seed=3))
    assert not torch.equal(random_pixel_mask((2, 8, 8), 0.5, seed=3), random_pixel_mask((2, 8, 8), 0.5, seed=4))


def test_random_blobs_are_clumped_where_random_pixels_are_scattered():
    def edges(mask: torch.Tensor) -> int:  # neighbouring pixels of which one is blanked and one is not
        return int((mask[..., 1:] != mask[..., :-1]).sum() + (mask[..., 1:, :] != mask[..., :-1, :]).sum())

    blobs = random_blob_mask((8, 32, 32), 0.2, cells=(4, 4), seed=0)
    scattered = random_pixel_mask((8, 32, 32), 0.2, seed=0)
    assert edges(blobs) < edges(scattered) / 4
    assert torch.equal(blobs, random_blob_mask((8, 32, 32), 0.2, cells=(4, 4), seed=0))
    assert not torch.equal(blobs, random_blob_mask((8, 32, 32), 0.2, cells=(4, 4), seed=1))


def test_pixel_masks_refuse_a_fraction_outside_zero_to_one():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        top_pixel_mask(torch.rand(1, 4, 4), 1.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        random_pixel_mask((1, 4, 4), -0.1)


def test_blanking_the_top_map_pixels_drops_the_probability_more_than_random_pixels():
    model, images = CornerNet(), bright_images()
    result = deletion_test(model, images, "layer4", fraction=0.2, seed=0)
    assert result.targets.tolist() == [0] * 6  # the predicted class
    # The map is non-zero only in the 64-pixel corner, which the top 205 pixels cover: class 0's score becomes
    # 0 like class 1's, so its probability falls from ~1 to exactly 1/2. Random pixels leave ~80% of the corner.
    assert torch.allclose(result.top_blanked, torch.full((6,), 0.5))
    assert (result.intact > 0.99).all()
    assert result.top_drop == pytest.approx(float(result.intact.mean()) - 0.5)
    assert result.top_drop > result.random_drop + 0.1 and result.top_drop > result.blob_drop + 0.1
    assert (result.random_blanked > result.top_blanked).all() and (result.blob_blanked > result.top_blanked).all()


def test_deletion_test_is_deterministic_given_a_seed_and_uses_given_targets():
    model, images = CornerNet(), bright_images()
    first = deletion_test(model, images, "layer4", seed=1, batch_size=4)
    second = deletion_test(model, images, "layer4", seed=1)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    other_class = deletion_test(model, images, "layer4", targets=1, seed=1)
    assert other_class.targets.tolist() == [1] * 6
    assert torch.allclose(other_class.intact, 1 - first.intact, atol=1e-6)


def test_deletion_test_blanks_to_the_dataset_mean_that_is_zero_in_normalised_space():
    model, images = CornerNet(), bright_images(n=2)
    full = deletion_test(model, images, "layer4", fraction=1.0)
    # Every pixel at the mean colour (0 after normalisation): both scores are 0, probabilities 1/2.
    assert torch.allclose(full.top_blanked, torch.full((2,), 0.5))
    assert torch.allclose(full.random_blanked, torch.full((2,), 0.5))
    assert torch.allclose(full.blob_blanked, torch.full((2,), 0.5))
