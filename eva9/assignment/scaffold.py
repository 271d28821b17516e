"""What the assignment notebook gives the student: the data, the network, the training loop and the figures.

The student writes the rest (the transforms and GradCAM in their own module, ``s9.py``). Under the grader
(``EVA9_ASSIGNMENT_GRADING=1``) nothing trains: :func:`train` loads the submitted weights, or, where none were
submitted, an untrained network so that the other questions can still be answered; and the test images are a
stratified subset of ``EVA9_ASSIGNMENT_TEST_PER_CLASS`` per class, so that a notebook runs in seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from .. import book, data, plots, train
from ..models import resnet18
from ..utils import seed_everything

__all__ = [
    "GRADING_ENV",
    "grading",
    "setup",
    "test_set",
    "show_augmentations",
    "train_network",
    "sample_images",
    "predict_test",
    "show_gradcam",
    "show_mistakes",
    "show_class_accuracy",
    "gradcam_check_network",
]

GRADING_ENV = "EVA9_ASSIGNMENT_GRADING"
PER_CLASS_ENV = "EVA9_ASSIGNMENT_TEST_PER_CLASS"


def grading() -> bool:
    """Whether the notebook runs under the grader (which sets ``EVA9_ASSIGNMENT_GRADING=1``)."""
    return os.environ.get(GRADING_ENV) == "1"


def setup() -> Path | None:
    """Find the CIFAR-10 copy (``EVA9_DATA_DIR`` or ``./data``, as the book's chapters do) and say which."""
    return book.setup()


def _per_class() -> int | None:
    value = os.environ.get(PER_CLASS_ENV)
    return int(value) if value else None


def test_set(transform=None) -> data.CIFAR10Dataset:
    """The official test images (all 10,000, or the grader's stratified subset), with ``transform``."""
    test = data.cifar10("test")
    per_class = _per_class()
    if per_class is not None:
        test = data.per_class_subset(test, per_class)  # type: ignore[assignment]
    test.transform = transform
    return test


def show_augmentations(train_transform, test_transform, n: int = 7) -> Figure:
    """One test image as ``test_transform`` shows it beside ``n`` draws of ``train_transform``."""
    image = data.cifar10("test").images[0]
    return plots.augmentation_grid(image, train_transform, test_transform, n=n)


def train_network(train_transform, test_transform, out: str | os.PathLike = "runs/s9") -> nn.Module:
    """The ResNet18 trained with your transforms into the run folder ``out``, in eval mode.

    A folder holding ``model.pt`` (a finished run, or weights trained elsewhere and copied there) is loaded, never
    retrained; an interrupted run resumes. The profile is the book's: ``seed`` (50 epochs) on a GPU, the short
    ``cpu`` one otherwise. Under the grader nothing trains (see the module docstring).
    """
    folder = Path(out)
    if (folder / "model.pt").is_file():
        return resnet18(weights=folder / "model.pt").eval()
    if grading():
        print(f"no submitted weights at {folder / 'model.pt'}: an untrained network stands in")
        seed_everything(0)
        return resnet18().eval()
    config = book.training_config()
    train_loader, test_loader = data.loaders(
        batch_size=config.batch_size,
        train_transform=train_transform,
        test_transform=test_transform,
        train_per_class=config.train_per_class,
        test_per_class=config.test_per_class,
        seed=config.seed,
    )
    run = train.fit(config, out=folder, resume=True, train_loader=train_loader, test_loader=test_loader)
    return run.model.cpu().eval()


def sample_images(n: int, transform) -> tuple[torch.Tensor, list[int]]:
    """The first ``n`` test images through ``transform``, stacked (B×3×32×32), and their labels."""
    test = test_set(transform)
    items = [test[i] for i in range(n)]
    return torch.stack([image for image, _ in items]), [int(label) for _, label in items]


def predict_test(model: nn.Module, transform) -> tuple[np.ndarray, np.ndarray]:
    """The model's predicted and true class of every test image (through ``transform``), as int arrays."""
    loader = torch.utils.data.DataLoader(test_set(transform), batch_size=250, shuffle=False)
    out = train.predict(model.eval(), loader)
    return out.preds.numpy(), out.labels.numpy()


def show_gradcam(images: torch.Tensor, maps: dict, labels, model: nn.Module) -> Figure:
    """Each image beside its map at every layer of ``maps`` ({layer name: B×H×W}), titled true/predicted class."""
    with torch.no_grad():
        preds = model.eval()(images).argmax(1).tolist()
    cams = {name: torch.as_tensor(m).reshape(len(images), *images.shape[-2:]).float() for name, m in maps.items()}
    return plots.gradcam_grid(images, cams, labels, preds)


def show_mistakes(indices, preds, labels, transform) -> Figure:
    """The test images at ``indices`` (of :func:`predict_test`'s order), titled true → predicted."""
    test = test_set(transform)
    indices = [int(i) for i in indices]
    images = torch.stack([test[i][0] for i in indices])
    return plots.image_grid(images, [int(labels[i]) for i in indices], [int(preds[i]) for i in indices])


def show_class_accuracy(accuracy) -> Figure:
    """The accuracy of each class (ten values in 0..1) as bars."""
    return plots.class_accuracy_bars(accuracy)


def gradcam_check_network() -> nn.Module:
    """A fixed untrained ResNet18 (seed 0, eval mode) to try a GradCAM on: the one the grader checks it with."""
    from .probe import gradcam_network

    return gradcam_network()
