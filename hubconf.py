"""torch.hub entry points: ``torch.hub.load("eva9-course/eva9", "resnet18", weights="seed")``.

``weights`` is None (random initialisation), the name of published weights (see ``eva9.weights.published()``) or
the path of a ``.pt`` state_dict; the file is verified against its SHA-256 before it is loaded.
"""

dependencies = ["torch", "torchvision", "albumentations", "numpy"]

from eva9.models import resnet18  # noqa: E402  (torch.hub reads `dependencies` first)

__all__ = ["resnet18"]
