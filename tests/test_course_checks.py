"""Course checks: the share of mistakes that stay within a group of classes, observed and expected from the
confusion matrix's margins; the figure of images with pixels blanked as the deletion test blanks them."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # this test process only: render without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from eva9 import plots  # noqa: E402
from eva9.analysis import ANIMALS, SHORT_NAMES, within_group_share  # noqa: E402
from eva9.data import MEAN  # noqa: E402


def test_observed_and_expected_shares_match_a_hand_computed_example():
    # Classes 0 and 1 form one group, 2 another. Off-diagonal: 0→1 2, 0→2 1, 1→0 3, 1→2 0, 2→0 1, 2→1 1: 8 mistakes,
    # 5 of them within the group. Row totals r = (3, 3, 2), column totals c = (4, 3, 1); r_i·c_j over the six
    # off-diagonal cells: 9, 3, 12, 3, 8, 6 (sum 41), within the group 9 + 12 = 21.
    cm = [[5, 2, 1], [3, 4, 0], [1, 1, 6]]
    share = within_group_share(cm, ["a", "a", "b"])
    assert share.mistakes == 8
    assert share.observed == pytest.approx(5 / 8)
    assert share.expected == pytest.approx(21 / 41)


def test_correct_predictions_do_not_change_either_share():
    cm = np.array([[5, 2, 1], [3, 4, 0], [1, 1, 6]])
    more_correct = cm + np.diag([100, 0, 7])
    assert within_group_share(more_correct, "aab") == within_group_share(cm, "aab")


def test_with_equal_margins_the_expectation_is_the_share_of_within_group_cells():
    # One mistake in every off-diagonal cell: 42 of the 90 (true, predicted) pairs join two animals or two vehicles.
    cm = np.ones((10, 10), dtype=int) + np.diag([50] * 10)
    share = within_group_share(cm, ANIMALS)
    assert share.mistakes == 90
    assert share.observed == pytest.approx(42 / 90)
    assert share.expected == pytest.approx(42 / 90)


def test_a_network_that_names_only_vehicles_is_expected_to_err_within_the_vehicles_often():
    # Every mistake is predicted "car", from each other class once: 9 mistakes, 3 of them (plane, ship, truck)
    # within the vehicles. Only column "car" has mistakes, so the expectation is the within-group share of
    # the rows that feed it, observed and expected alike: 3 of 9.
    cm = np.zeros((10, 10), dtype=int)
    car = SHORT_NAMES.index("car")
    cm[:, car] = 1
    cm[car, car] = 20
    share = within_group_share(cm, ANIMALS)
    assert share.observed == pytest.approx(3 / 9)
    assert share.expected == pytest.approx(3 / 9)


def test_no_mistakes_give_nan_shares():
    share = within_group_share(np.diag([3, 4, 5]), "aab")
    assert share.mistakes == 0 and math.isnan(share.observed) and math.isnan(share.expected)


def test_a_group_per_class_is_required():
    with pytest.raises(ValueError, match="one group per class"):
        within_group_share(np.eye(3), "ab")


# ---------------------------------------------------------------------------------------- the blanked images


def test_blanked_grid_shows_each_image_intact_then_once_per_mask_with_the_pixels_in_the_mean_colour():
    before = plt.get_fignums()
    images = torch.randn(2, 3, 8, 8)
    left = torch.zeros(2, 8, 8, dtype=torch.bool)
    left[:, :, :4] = True
    fig = plots.blanked_grid(images, {"left half": left, "nothing": torch.zeros_like(left)})
    assert len(fig.axes) == 2 * 3
    assert [ax.get_title() for ax in fig.axes[:3]] == ["intact", "left half", "nothing"]
    shown = fig.axes[1].images[0].get_array()  # first image, left half blanked, as displayed (H×W×3 in [0, 1])
    assert np.allclose(shown[:, :4], np.asarray(MEAN), atol=1e-6)  # blanked: the training set's mean colour
    assert np.allclose(fig.axes[2].images[0].get_array(), fig.axes[0].images[0].get_array())
    assert plt.get_fignums() == before


def test_blanked_grid_rejects_a_mask_of_the_wrong_size():
    with pytest.raises(ValueError, match="mask 'top'"):
        plots.blanked_grid(torch.zeros(2, 3, 8, 8), {"top": torch.zeros(2, 4, 4, dtype=torch.bool)})
