"""Error analysis: confusion counts, the seed's class-accuracy printout, the most confused pairs, the worst mistakes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from eva9.analysis import (
    SHORT_NAMES,
    class_accuracy,
    confusion_matrix,
    format_class_accuracy,
    misclassified,
    most_confused_pairs,
    print_class_accuracy,
)

# ------------------------------------------------------------------------------------ confusion and accuracy


def test_confusion_matrix_counts_rows_true_columns_predicted():
    cm = confusion_matrix([1, 1, 2, 0], [1, 2, 2, 0], num_classes=3)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert cm.dtype == np.int64


def test_confusion_matrix_refuses_mismatched_or_out_of_range_labels():
    with pytest.raises(ValueError, match="differ in length"):
        confusion_matrix([0, 1], [0])
    with pytest.raises(ValueError, match="preds must lie"):
        confusion_matrix([10], [0])


def test_class_accuracy_is_correct_over_total_per_class_and_nan_for_absent_classes():
    acc = class_accuracy([0, 0, 1, 2], [0, 1, 1, 1], num_classes=4)
    np.testing.assert_allclose(acc[:3], [1.0, 1 / 3, np.nan])
    assert np.isnan(acc[3])


def seed_printout(preds, labels) -> str:
    """The seed notebook's loop, verbatim apart from collecting lines instead of printing them."""
    class_correct = [0.0] * 10
    class_total = [0.0] * 10
    for p, label in zip(preds, labels):
        class_correct[label] += int(p == label)
        class_total[label] += 1
    return "\n".join(
        f"Accuracy of {SHORT_NAMES[i]:>5} : {int(100 * class_correct[i] / class_total[i]):2d} %" for i in range(10)
    )


def test_class_accuracy_printout_matches_the_seed_notebook_line_for_line():
    rng = np.random.default_rng(0)
    # 29 of 100 right for one class: 100 * 0.29 is 28.999... in floating point, the seed prints 29
    correct = [94, 97, 29, 57, 81, 70, 100, 88, 0, 91]
    labels = np.repeat(np.arange(10), 100)
    preds = labels.copy()
    for c, k in enumerate(correct):
        wrong = rng.choice(100, size=100 - k, replace=False) + 100 * c
        preds[wrong] = (c + 1) % 10
    text = format_class_accuracy(class_accuracy(preds, labels))
    assert text == seed_printout(preds.tolist(), labels.tolist())
    assert text.splitlines()[0] == "Accuracy of plane : 94 %"
    assert text.splitlines()[2] == "Accuracy of  bird : 29 %"
    assert text.splitlines()[6] == "Accuracy of  frog : 100 %"


def test_print_class_accuracy_prints_the_lines_and_returns_the_fractions(capsys):
    labels = np.arange(10).repeat(4)
    preds = labels.copy()
    preds[:2] = 5  # two planes taken for dogs
    acc = print_class_accuracy(preds, labels)
    assert capsys.readouterr().out.splitlines()[:2] == ["Accuracy of plane : 50 %", "Accuracy of   car : 100 %"]
    assert acc[0] == 0.5 and acc.shape == (10,)


def test_format_class_accuracy_marks_classes_without_samples_and_checks_length():
    acc = np.full(10, 0.5)
    acc[3] = np.nan
    assert format_class_accuracy(acc).splitlines()[3] == "Accuracy of   cat : n/a (no samples)"
    with pytest.raises(ValueError, match="9 accuracies for 10"):
        format_class_accuracy(np.ones(9))


# ------------------------------------------------------------------------------------------ confused pairs


def test_most_confused_pairs_are_off_diagonal_most_frequent_first_ties_by_class():
    cm = np.array([[50, 3, 0], [7, 40, 3], [1, 9, 30]])
    assert most_confused_pairs(cm, 3) == [(2, 1, 9), (1, 0, 7), (0, 1, 3)]
    assert most_confused_pairs(cm, 100) == [(2, 1, 9), (1, 0, 7), (0, 1, 3), (1, 2, 3), (2, 0, 1)]  # no zeros
    assert most_confused_pairs(np.eye(3, dtype=int) * 5, 2) == []
    assert all(isinstance(v, int) for pair in most_confused_pairs(cm, 1) for v in pair)


def test_most_confused_pairs_refuses_non_square_matrices_and_negative_k():
    with pytest.raises(ValueError, match="square"):
        most_confused_pairs(np.zeros((2, 3)), 1)
    with pytest.raises(ValueError, match="k must be"):
        most_confused_pairs(np.zeros((2, 2)), -1)


# ------------------------------------------------------------------------------------------------ mistakes


class LogitsInImage(nn.Module):
    """A 'model' whose logits are the image's ten pixel values, so every confidence is known in advance."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def logit_batches(n: int = 50, batch_size: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 10, 1, 1, generator=g) * 3
    labels = torch.randint(0, 10, (n,), generator=g)
    return images, labels, [(images[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, n, batch_size)]


def brute_force(images, labels, limit):
    probs = images.flatten(1).softmax(1)
    preds = probs.argmax(1)
    rows = [(-float(probs[i, preds[i]]), i) for i in range(len(labels)) if preds[i] != labels[i]]
    return [i for _, i in sorted(rows)][:limit]


@pytest.mark.parametrize("limit", [7, None, 0])
def test_misclassified_keeps_the_most_confident_mistakes_in_order(limit):
    images, labels, batches = logit_batches()
    result = misclassified(LogitsInImage(), batches, limit=limit)
    expected = brute_force(images, labels, limit)
    assert result.indices.tolist() == expected
    assert torch.equal(result.images, images[expected])  # the very tensors the loader gave, still normalized
    assert torch.equal(result.labels, labels[expected])
    probs = images.flatten(1).softmax(1)[expected]
    assert torch.equal(result.preds, probs.argmax(1))
    assert (result.preds != result.labels).all()
    torch.testing.assert_close(result.confidences, probs.max(1).values)
    assert (result.confidences[:-1] >= result.confidences[1:]).all()


def test_misclassified_works_with_a_dataloader_and_restores_the_model_mode():
    images, labels, _ = logit_batches(n=30)
    model = nn.Sequential(LogitsInImage(), nn.BatchNorm1d(10)).train()
    loader = DataLoader(TensorDataset(images, labels), batch_size=8)
    result = misclassified(model, loader, limit=5)
    assert model.training and model[1].training
    assert len(result.labels) == 5 and result.images.shape == (5, 10, 1, 1)


def test_misclassified_refuses_an_empty_loader_and_a_negative_limit():
    with pytest.raises(ValueError, match="empty loader"):
        misclassified(LogitsInImage(), [], limit=3)
    with pytest.raises(ValueError, match="limit"):
        misclassified(LogitsInImage(), logit_batches()[2], limit=-1)


def test_jpeg_effect_scores_the_originals_and_their_jpeg_copy_and_leaves_the_dataset_alone(make_batches_folder):
    from eva9 import analysis, data

    class AlwaysCat(torch.nn.Module):
        def forward(self, images):
            return torch.nn.functional.one_hot(torch.full((len(images),), 3), 10).float()

    test = data.cifar10("test", root=make_batches_folder().parent)  # 10 images, one per class
    effect = analysis.jpeg_effect(AlwaysCat(), test, quality=75, batch_size=4)
    assert (effect.images, effect.quality) == (10, 75)
    assert effect.accuracy == effect.accuracy_jpeg == pytest.approx(0.1)  # one cat among ten classes
    assert effect.pixel_difference == pytest.approx(data.pixel_difference(test, data.jpeg_copy(test, 75)))
    assert effect.pixel_difference > 0 and test.transform is None
