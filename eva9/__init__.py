"""eva9: ResNet18 on CIFAR-10 with Albumentations augmentation and GradCAM, the package behind the course book."""

__version__ = "0.1.0"
