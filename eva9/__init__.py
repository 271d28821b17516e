"""eva9: ResNet18 on CIFAR-10 with Albumentations augmentation and GradCAM, the package behind the course book."""

import os

# Albumentations asks PyPI for its latest version whenever it is imported (a blocking request, which waits for its
# timeout on an offline machine); eva9 works offline, so it turns the check off unless the user has set it.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
