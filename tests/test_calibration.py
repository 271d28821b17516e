"""Calibration: the reliability table bins predictions by confidence, the ECE is the weighted gap, and the
reliability diagram shows one bar per non-empty bin against the diagonal."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # this test process only: render without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from eva9.analysis import ReliabilityTable, reliability_table  # noqa: E402
from eva9.plots import reliability_diagram  # noqa: E402


def two_class_probs(confidences, predicted_correctly) -> tuple[np.ndarray, np.ndarray]:
    """Two-class probabilities whose top class is 0 with the given confidences; labels 0 where correct, else 1."""
    confidences = np.asarray(confidences, dtype=np.float64)
    probs = np.stack([confidences, 1 - confidences], axis=1)
    labels = np.where(np.asarray(predicted_correctly), 0, 1)
    return probs, labels


def test_a_perfectly_calibrated_set_has_zero_ece():
    # In every bin the accuracy equals the confidence: 11 of 20 right at 0.55, 3 of 4 at 0.75, 19 of 20 at 0.95.
    confidences = [0.55] * 20 + [0.75] * 4 + [0.95] * 20
    correct = [True] * 11 + [False] * 9 + [True] * 3 + [False] + [True] * 19 + [False]
    table = reliability_table(*two_class_probs(confidences, correct))
    assert table.ece == pytest.approx(0.0, abs=1e-12)


def test_an_overconfident_set_has_the_ece_computed_by_hand():
    # 10 predictions at 0.9 with 5 right (gap 0.4) and 10 at 0.6 with 6 right (gap 0): ECE = 10/20·0.4 = 0.2.
    confidences = [0.9] * 10 + [0.6] * 10
    correct = [True] * 5 + [False] * 5 + [True] * 6 + [False] * 4
    table = reliability_table(*two_class_probs(confidences, correct), bins=10)
    assert table.ece == pytest.approx(0.2)
    filled = table.counts > 0
    assert table.counts[filled].tolist() == [10, 10]
    assert table.confidence[filled] == pytest.approx([0.6, 0.9])
    assert table.accuracy[filled] == pytest.approx([0.6, 0.5])


def test_bins_cover_zero_to_one_and_counts_sum_to_the_number_of_predictions():
    generator = torch.Generator().manual_seed(0)
    probs = (3 * torch.randn(500, 10, generator=generator)).softmax(dim=1)
    labels = torch.randint(0, 10, (500,), generator=generator)
    table = reliability_table(probs, labels)
    assert len(table.edges) == 16 and table.edges[0] == 0.0 and table.edges[-1] == 1.0
    assert np.allclose(np.diff(table.edges), 1 / 15)
    assert table.counts.sum() == 500 and len(table.counts) == 15
    empty = table.counts == 0
    assert np.isnan(table.accuracy[empty]).all() and np.isnan(table.confidence[empty]).all()
    inside = ~empty
    lower, upper = table.edges[:-1][inside], table.edges[1:][inside]
    assert ((table.confidence[inside] > lower) & (table.confidence[inside] <= upper)).all()


def test_a_confidence_on_an_edge_belongs_to_the_bin_below_it():
    table = reliability_table(*two_class_probs([0.6, 1.0], [True, True]), bins=10)
    assert table.counts.tolist() == [0, 0, 0, 0, 0, 1, 0, 0, 0, 1]  # (0.5, 0.6] and (0.9, 1.0]


def test_reliability_table_refuses_logits_mismatched_lengths_and_out_of_range_labels():
    with pytest.raises(ValueError, match="softmax"):
        reliability_table(torch.randn(4, 3), [0, 1, 2, 0])
    with pytest.raises(ValueError, match="N×C"):
        reliability_table(np.full((4, 2), 0.5), [0, 1, 0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reliability_table(np.full((2, 2), 0.5), [0, 2])
    with pytest.raises(ValueError, match="bins"):
        reliability_table(np.full((2, 2), 0.5), [0, 1], bins=0)


# ------------------------------------------------------------------------------------------------ the figure


@pytest.fixture(autouse=True)
def pyplot_untouched():
    """No figure function may leave a figure in pyplot's global state."""
    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before


def overconfident_table() -> ReliabilityTable:
    return reliability_table(
        *two_class_probs(
            [0.9] * 10 + [0.6] * 10 + [0.75] * 3, [True] * 5 + [False] * 5 + [True] * 6 + [False] * 4 + [True] * 3
        ),
        bins=10,
    )


def test_reliability_diagram_has_one_bar_per_non_empty_bin_the_diagonal_and_the_ece(tmp_path):
    table = overconfident_table()
    fig = reliability_diagram(table, path=tmp_path / "reliability.png")
    diagram, counts = fig.axes
    accuracy_bars = next(c for c in diagram.containers if c.get_label() == "accuracy")
    assert len(accuracy_bars) == int((table.counts > 0).sum()) == 3
    assert sorted(round(bar.get_height(), 6) for bar in accuracy_bars) == pytest.approx(
        sorted(table.accuracy[table.counts > 0])
    )
    diagonals = [
        line for line in diagram.get_lines() if list(line.get_xdata()) == [0, 1] and list(line.get_ydata()) == [0, 1]
    ]
    assert len(diagonals) == 1
    assert f"ECE = {100 * table.ece:.2f}%" in diagram.get_title()
    assert [bar.get_height() for bar in counts.containers[0]] == table.counts.tolist()
    assert (tmp_path / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reliability_diagram_draws_into_two_given_axes_and_refuses_one():
    fig = matplotlib.figure.Figure()
    axes = fig.subplots(2, 1)
    assert reliability_diagram(overconfident_table(), axes=axes) is fig
    assert len(axes[0].containers) == 2 and len(axes[1].containers) == 1
    with pytest.raises(ValueError, match="two axes"):
        reliability_diagram(overconfident_table(), axes=[axes[0]])
