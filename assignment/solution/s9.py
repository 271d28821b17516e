"""My S9 module: the Albumentations pipelines and GradCAM, imported by the notebook. (Reference solution.)"""

import albumentations as A
import cv2
import torch
import torch.nn.functional as F
from albumentations.pytorch import ToTensorV2

MEAN = (0.4914, 0.4822, 0.4465)  # CIFAR-10's channel statistics (eva9.constants has the measured ones)
STD = (0.2470, 0.2435, 0.2616)


def train_transforms():
    """Pad 4 and crop 32, flip half the time, cut out one 16×16 mean-filled square half the time, normalize."""
    mean_pixel = tuple(round(255 * m) for m in MEAN)
    return A.Compose(
        [
            A.Pad(padding=4, border_mode=cv2.BORDER_REFLECT_101),
            A.RandomCrop(height=32, width=32),
            A.HorizontalFlip(p=0.5),
            A.CoarseDropout(
                num_holes_range=(1, 1), hole_height_range=(16, 16), hole_width_range=(16, 16), fill=mean_pixel, p=0.5
            ),
            A.Normalize(mean=MEAN, std=STD),
            ToTensorV2(),
        ]
    )


def test_transforms():
    """Normalize and convert to a tensor: nothing random."""
    return A.Compose([A.Normalize(mean=MEAN, std=STD), ToTensorV2()])


class GradCAM:
    """GradCAM of one layer: hooks record its output and the gradient of the class score with respect to it.

    Use it in a ``with`` block (or call ``remove()``): the hooks are removed on leaving it.
    """

    def __init__(self, model, layer):
        self.model = model
        self.activations = None
        self.gradients = None
        self.handles = [layer.register_forward_hook(self._keep)]

    def _keep(self, module, inputs, output):
        self.activations = output
        output.register_hook(self._keep_gradient)

    def _keep_gradient(self, gradient):
        self.gradients = gradient

    def __call__(self, images, target=None):
        """Maps B×H×W in [0, 1] for ``target`` (default: the predicted class)."""
        self.model.eval()
        images = images.clone().requires_grad_(True)
        logits = self.model(images)
        target = logits.argmax(1) if target is None else torch.as_tensor(target).expand(len(images))
        self.model.zero_grad()
        logits.gather(1, target[:, None]).sum().backward()
        weights = self.gradients.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * self.activations).sum(dim=1, keepdim=True))
        cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        peak = cam.flatten(1).max(1).values.clamp_min(1e-12)
        return (cam / peak[:, None, None]).detach()

    def remove(self):
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.remove()
