"""Class activation maps of the CAM family at any number of layers at once: :class:`CAM` and its result.

:class:`CAM` gets every requested layer's map from one forward pass: forward hooks keep the layers' outputs, and,
for the gradient methods, ``torch.autograd.grad`` differentiates the target scores with respect to exactly those
tensors, so one backward pass serves every layer, no gradient reaches the parameters' ``.grad`` and the backward
pass stops at the earliest layer. Each method's formula is one function of :mod:`eva9.cam.methods`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .hooks import _LayerOutputs
from .methods import (
    eigencam_map,
    gradcam_map,
    gradcampp_map,
    hirescam_map,
    layercam_map,
    scorecam_map,
    scorecam_masks,
    xgradcam_map,
)

__all__ = ["CAM", "METHODS", "CAMResult", "GradCAM"]


# --------------------------------------------------------------------------------------------------- the result


class CAMResult(Mapping):
    """Layer name → maps (B, H, W) in [0, 1] at the input's size.

    Also holds the ``logits``, ``predictions`` and ``targets`` the maps explain.
    """

    def __init__(self, maps: dict[str, torch.Tensor], logits: torch.Tensor, targets: torch.Tensor) -> None:
        self.maps = maps
        self.logits = logits
        self.predictions = logits.argmax(dim=1)
        self.targets = targets

    def __getitem__(self, layer: str) -> torch.Tensor:
        return self.maps[layer]

    def __iter__(self) -> Iterator[str]:
        return iter(self.maps)

    def __len__(self) -> int:
        return len(self.maps)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{name!r}: {tuple(m.shape)}" for name, m in self.maps.items())
        return f"CAMResult({{{shapes}}}, targets={self.targets.tolist()})"


# ------------------------------------------------------------------------------------------------------- CAM


def _feature_layer_names(model: nn.Module) -> list[str]:
    """Names of the submodules that are, or contain, a convolution: the usual GradCAM choices, shallowest first."""
    names = [
        name
        for name, module in model.named_modules()
        if name and any(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules())
    ]
    return sorted(names, key=lambda name: name.count("."))


def _choices(model: nn.Module, limit: int = 12) -> str:
    names = _feature_layer_names(model)
    shown = ", ".join(repr(n) for n in names[:limit])
    return f"{shown}, ... ({len(names) - limit} more)" if len(names) > limit else shown or "(none)"


_GRADIENT_METHODS = {
    "gradcam": gradcam_map,
    "gradcam++": gradcampp_map,
    "xgradcam": xgradcam_map,
    "hirescam": hirescam_map,
    "layercam": layercam_map,
}
METHODS: tuple[str, ...] = (*_GRADIENT_METHODS, "eigencam", "scorecam")
"""The methods :class:`CAM` computes; the first five use the target score's gradients."""


class CAM:
    """Maps of one CAM method for several layers of a classifier, from one forward pass and, for the gradient
    methods, one backward pass, whatever the number of layers.

    ``layers``: names as in ``model.named_modules()`` (e.g. ``["layer1", "layer2", "layer3", "layer4"]``) or the
    modules themselves. ``method``: one of :data:`METHODS`. ``eigencam`` needs no gradient and ignores the target;
    ``scorecam`` needs no gradient but one more forward pass per channel and image, ``batch_size`` masked images at
    a time. The forward hooks exist only while a call runs, so the model carries no trace between calls;
    ``close()`` (or leaving a ``with`` block) retires the object.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str | nn.Module] | str | nn.Module,
        method: str = "gradcam",
        *,
        batch_size: int = 128,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if method not in METHODS:
            raise ValueError(f"unknown CAM method {method!r}; choose from {', '.join(METHODS)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(layers, (str, nn.Module)):
            layers = [layers]
        layers = list(layers)
        if not layers:
            raise ValueError(f"give at least one layer, e.g. one of {_choices(model)}")
        by_name = dict(model.named_modules())
        name_of = {id(module): name for name, module in by_name.items()}
        resolved: dict[str, nn.Module] = {}
        for layer in layers:
            if isinstance(layer, str):
                if layer not in by_name:
                    raise ValueError(f"model has no layer named {layer!r}; choose from {_choices(model)}")
                name = layer
            elif isinstance(layer, nn.Module):
                if id(layer) not in name_of:
                    raise ValueError(
                        f"the {type(layer).__name__} given is not part of this model; choose from {_choices(model)}"
                    )
                name = name_of[id(layer)]
            else:
                raise TypeError(f"layers must be names or modules, got {type(layer).__name__}")
            if name in resolved:
                raise ValueError(f"layer {name!r} is listed twice")
            resolved[name] = by_name[name]
        self.model = model
        self.method = method
        self.batch_size = batch_size
        self.layers: list[str] = list(resolved)
        self._modules = resolved
        self._closed = False

    def close(self) -> None:
        """Retire this object (it holds no hooks between calls, so this only forbids further calls)."""
        self._closed = True

    def __enter__(self) -> CAM:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        closed = ", closed" if self._closed else ""
        model = type(self.model).__name__
        return f"{type(self).__name__}({model}, layers={self.layers}, method={self.method!r}{closed})"

    def __call__(self, images: torch.Tensor, targets: int | Sequence[int] | torch.Tensor | None = None) -> CAMResult:
        """Maps for every layer; ``targets``: None (the predicted class), one class for all, or one per image."""
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} is closed; create a new one")
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be a float tensor B×C×H×W (use image.unsqueeze(0) for one), got {shape}")
        if images.shape[0] == 0:
            raise ValueError("images is an empty batch")
        batch = images.shape[0]
        with torch.inference_mode(False):  # the caller may be in inference mode; autograd must not see its tensors
            wanted = _target_tensor(targets, batch)

        uses_gradients = self.method in _GRADIENT_METHODS
        device = next((p.device for p in self.model.parameters()), images.device)
        modes = [(module, module.training) for module in self.model.modules()]
        self.model.eval()
        try:
            with torch.inference_mode(False), torch.set_grad_enabled(uses_gradients):
                x = images.to(device)
                if x.is_inference():
                    x = x.clone()
                with _LayerOutputs(self._modules, leaves=uses_gradients) as kept:
                    logits = self.model(x)
                activations = self._checked(kept.outputs, batch)
                if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != batch:
                    got = str(tuple(logits.shape)) if isinstance(logits, torch.Tensor) else type(logits).__name__
                    raise ValueError(f"the model must return logits B×classes, got {got}")
                classes = logits.shape[1]
                target = logits.detach().argmax(dim=1) if wanted is None else wanted.to(logits.device)
                if target.min() < 0 or target.max() >= classes:
                    raise ValueError(f"targets must lie in [0, {classes - 1}], got {target.tolist()}")
                if uses_gradients:
                    score = logits.gather(1, target[:, None]).sum()  # in eval mode each image's score is its own
                    gradients = torch.autograd.grad(score, [activations[name] for name in self.layers])
            size = (images.shape[-2], images.shape[-1])
            maps = {}
            for i, name in enumerate(self.layers):
                found = activations[name].detach()
                if uses_gradients:
                    maps[name] = _GRADIENT_METHODS[self.method](found, gradients[i], size)
                elif self.method == "eigencam":
                    maps[name] = eigencam_map(found, size)
                else:
                    maps[name] = scorecam_map(found, self._masked_scores(x, found, target), size)
                maps[name] = maps[name].to(images.device)
            return CAMResult(maps, logits.detach().float().to(images.device), target.to(images.device))
        finally:
            for module, training in modes:
                module.training = training

    @torch.no_grad()
    def _masked_scores(self, x: torch.Tensor, activations: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """ScoreCAM's scores (B, K): the target's logit for each image multiplied by each channel's mask."""
        masks = scorecam_masks(activations, (int(x.shape[-2]), int(x.shape[-1])))
        scores = torch.empty(masks.shape[:2], device=x.device)
        for b in range(x.shape[0]):
            for start in range(0, masks.shape[1], self.batch_size):
                masked = x[b] * masks[b, start : start + self.batch_size, None]
                scores[b, start : start + self.batch_size] = self.model(masked)[:, target[b]].float()
        return scores

    def _checked(self, outputs: dict[str, list], batch: int) -> dict[str, torch.Tensor]:
        """The single B×C×h×w output of each layer, or a ValueError naming the layer and the usual choices."""
        found = {}
        for name in self.layers:
            kept = outputs[name]
            if len(kept) != 1:
                what = "did not run in" if not kept else f"ran {len(kept)} times in"
                raise ValueError(f"layer {name!r} {what} the forward pass; choose from {_choices(self.model)}")
            output = kept[0]
            if not isinstance(output, torch.Tensor) or output.ndim != 4 or output.shape[0] != batch:
                shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
                raise ValueError(
                    f"layer {name!r} gives {shape}, not a B×C×h×w feature map; choose from {_choices(self.model)}"
                )
            found[name] = output
        return found


class GradCAM(CAM):
    """GradCAM maps for several layers from one forward and one backward pass: ``CAM(model, layers, "gradcam")``."""

    def __init__(self, model: nn.Module, layers: Sequence[str | nn.Module] | str | nn.Module) -> None:
        super().__init__(model, layers, method="gradcam")


def _target_tensor(targets, batch: int) -> torch.Tensor | None:
    """Targets as a LongTensor (B,), or None for 'the predicted class'; the range is checked after the forward pass."""
    if targets is None:
        return None
    if isinstance(targets, (bool, np.bool_)):
        raise ValueError("targets must be class indices, not booleans")
    if isinstance(targets, (int, np.integer)):
        return torch.full((batch,), int(targets), dtype=torch.long)
    tensor = torch.as_tensor(np.asarray(targets) if not isinstance(targets, torch.Tensor) else targets)
    if tensor.dtype == torch.bool or tensor.is_floating_point() or tensor.is_complex():
        raise ValueError(f"targets must be integer class indices, got dtype {tensor.dtype}")
    if tensor.ndim == 0:
        return torch.full((batch,), int(tensor), dtype=torch.long)
    if tensor.ndim != 1 or tensor.numel() != batch:
        raise ValueError(f"give one target per image ({batch}), got shape {tuple(tensor.shape)}")
    return tensor.long().cpu().clone()
