"""My S9 module: the Albumentations pipelines and GradCAM, imported by the notebook s9_assignment.ipynb.

Fill in the three parts below; the notebook's checks (``grader.check("q1")`` ...) say whether they have the
right shape. Keep this file beside the notebook and hand in both.
"""

import albumentations as A  # noqa: F401  (you will need these)
import torch  # noqa: F401
from albumentations.pytorch import ToTensorV2  # noqa: F401


def train_transforms():
    """The train pipeline: an albumentations.Compose taking image=H×W×3 uint8 and giving a 3×32×32 float tensor.

    At least: horizontal flip, Normalize with CIFAR-10's statistics, ToTensorV2; more (pad-and-crop, Cutout as
    CoarseDropout) for more points.
    """
    raise NotImplementedError("write train_transforms() in s9.py")


def test_transforms():
    """The test pipeline: only Normalize (the same statistics) and ToTensorV2."""
    raise NotImplementedError("write test_transforms() in s9.py")


class GradCAM:
    """GradCAM of one layer of a model, with hooks.

    ``GradCAM(model, layer)`` registers the hooks; ``cam(images, target=None)`` gives maps B×H×W (the images'
    size) for ``target`` (default: the predicted class); ``cam.remove()``, or leaving ``with GradCAM(...) as cam:``,
    removes every hook it registered.
    """

    def __init__(self, model, layer):
        raise NotImplementedError("write GradCAM in s9.py")
