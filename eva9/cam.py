"""Class activation maps: GradCAM (Selvaraju et al. 2017) at any number of layers at once, and the overlay that shows
one on its image. :mod:`eva9.gradcam` re-exports all of it beside the checks of the maps.

For a feature map ``A`` (K channels) and the pre-softmax score ``y`` of the target class, the channel weights are
the spatial means of ``dy/dA`` and the map is ``ReLU(sum_k w_k A_k)``, bilinearly upsampled to the input size and
min-max scaled to [0, 1] per image. :func:`gradcam_map` is that definition and nothing else.

:class:`GradCAM` gets every requested layer's map from one forward and one backward pass: forward hooks keep the
layers' outputs, and ``torch.autograd.grad`` differentiates the target scores with respect to exactly those
tensors, so no gradient reaches the parameters' ``.grad`` and the backward pass stops at the earliest layer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CAMResult", "GradCAM", "gradcam_map", "overlay", "scale_per_image"]


# ------------------------------------------------------------------------------------------------------- the math


def scale_per_image(maps: torch.Tensor) -> torch.Tensor:
    """Min-max scale each (H, W) map of a (B, H, W) batch to [0, 1]; a constant map (e.g. all zero) becomes zero."""
    flat = maps.flatten(1)
    low = flat.min(dim=1).values[:, None, None]
    span = flat.max(dim=1).values[:, None, None] - low
    return torch.where(span > 0, (maps - low) / torch.where(span > 0, span, torch.ones_like(span)), 0.0)


# The book includes gradcam_map and keeps its lines within its page.
# fmt: off
def gradcam_map(
    activations: torch.Tensor,
    gradients: torch.Tensor,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """GradCAM maps (B, H, W) in [0, 1] from a layer's activations and the target
    score's gradients (both B×K×h×w).

    ``size`` is the (H, W) to upsample to bilinearly; None keeps the layer's own h×w.
    """
    if activations.ndim != 4 or activations.shape != gradients.shape:
        raise ValueError(
            f"activations and gradients must be equal B×K×h×w tensors, "
            f"got {tuple(activations.shape)} and {tuple(gradients.shape)}"
        )
    # B×K: how much each channel matters to the target score
    weights = gradients.float().mean(dim=(2, 3))
    cam = F.relu(torch.einsum("bk,bkhw->bhw", weights, activations.float()))
    if size is not None and tuple(size) != tuple(cam.shape[-2:]):
        cam = F.interpolate(
            cam[:, None], size=tuple(size), mode="bilinear", align_corners=False
        )[:, 0]
    return scale_per_image(cam)
# fmt: on


# ---------------------------------------------------------------------------------------------------- the hooks


class _LayerOutputs:
    """Forward hooks, present only inside a ``with`` block, that keep each named layer's output of that block."""

    def __init__(self, layers: dict[str, nn.Module]) -> None:
        self.layers = layers
        self.outputs: dict[str, list] = {name: [] for name in layers}
        self._handles: list = []

    def __enter__(self) -> _LayerOutputs:
        try:
            for name, module in self.layers.items():
                self._handles.append(module.register_forward_hook(self._keeper(name)))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()

    def _keeper(self, name: str):
        def keep(module: nn.Module, inputs, output):
            self.outputs[name].append(output)
            if isinstance(output, torch.Tensor) and output.is_floating_point() and not output.requires_grad:
                # A frozen model (no parameter requires grad) builds no graph: make this output the graph's leaf.
                leaf = output.detach().requires_grad_(True)
                self.outputs[name][-1] = leaf
                return leaf
            return None

        return keep

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


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


# ----------------------------------------------------------------------------------------------------- GradCAM


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


class GradCAM:
    """GradCAM maps for several layers of a classifier from one forward and one backward pass.

    ``layers``: names as in ``model.named_modules()`` (e.g. ``["layer1", "layer2", "layer3", "layer4"]``) or the
    modules themselves. The forward hooks exist only while a call runs, so the model carries no trace between
    calls; ``close()`` (or leaving a ``with`` block) retires the object.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str | nn.Module] | str | nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
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
        self.layers: list[str] = list(resolved)
        self._modules = resolved
        self._closed = False

    def close(self) -> None:
        """Retire this object (it holds no hooks between calls, so this only forbids further calls)."""
        self._closed = True

    def __enter__(self) -> GradCAM:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GradCAM({type(self.model).__name__}, layers={self.layers}{', closed' if self._closed else ''})"

    def __call__(self, images: torch.Tensor, targets: int | Sequence[int] | torch.Tensor | None = None) -> CAMResult:
        """Maps for every layer; ``targets``: None (the predicted class), one class for all, or one per image."""
        if self._closed:
            raise RuntimeError("this GradCAM is closed; create a new one")
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be a float tensor B×C×H×W (use image.unsqueeze(0) for one), got {shape}")
        if images.shape[0] == 0:
            raise ValueError("images is an empty batch")
        batch = images.shape[0]
        with torch.inference_mode(False):  # the caller may be in inference mode; autograd must not see its tensors
            wanted = _target_tensor(targets, batch)

        device = next((p.device for p in self.model.parameters()), images.device)
        modes = [(module, module.training) for module in self.model.modules()]
        self.model.eval()
        try:
            with torch.inference_mode(False), torch.enable_grad():
                x = images.to(device)
                if x.is_inference():
                    x = x.clone()
                with _LayerOutputs(self._modules) as kept:
                    logits = self.model(x)
                activations = self._checked(kept.outputs, batch)
                if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != batch:
                    got = str(tuple(logits.shape)) if isinstance(logits, torch.Tensor) else type(logits).__name__
                    raise ValueError(f"the model must return logits B×classes, got {got}")
                classes = logits.shape[1]
                target = logits.detach().argmax(dim=1) if wanted is None else wanted.to(logits.device)
                if target.min() < 0 or target.max() >= classes:
                    raise ValueError(f"targets must lie in [0, {classes - 1}], got {target.tolist()}")
                score = logits.gather(1, target[:, None]).sum()  # in eval mode each image's score is its own
                gradients = torch.autograd.grad(score, [activations[name] for name in self.layers])
            size = (images.shape[-2], images.shape[-1])
            maps = {
                name: gradcam_map(activations[name].detach(), grad, size).to(images.device)
                for name, grad in zip(self.layers, gradients)
            }
            return CAMResult(maps, logits.detach().float().to(images.device), target.to(images.device))
        finally:
            for module, training in modes:
                module.training = training

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


# ----------------------------------------------------------------------------------------------------- overlay


def _as_display_image(image, normalized: bool = True) -> torch.Tensor:
    """H×W×3 float in [0, 1] from a 3×H×W tensor (normalized unless ``normalized=False``) or an H×W×3 image
    in [0, 1]."""
    if isinstance(image, torch.Tensor) and image.ndim == 3 and image.shape[0] == 3:
        chw = image.detach().float().cpu()
        if normalized:
            from eva9.transforms import denormalize

            chw = denormalize(chw)
        elif chw.numel() and (chw.min() < -1e-6 or chw.max() > 1 + 1e-6):
            raise ValueError("a 3×H×W image given with normalized=False must lie in [0, 1]")
        return chw.permute(1, 2, 0).clamp(0, 1)
    hwc = torch.as_tensor(np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image))
    if hwc.ndim != 3 or hwc.shape[-1] != 3:
        raise ValueError(f"image must be H×W×3 in [0, 1] or a normalized 3×H×W tensor, got {tuple(hwc.shape)}")
    if not hwc.is_floating_point():
        raise ValueError(f"an H×W×3 image must be float in [0, 1], got dtype {hwc.dtype}; divide uint8 by 255")
    if hwc.numel() and (hwc.min() < -1e-6 or hwc.max() > 1 + 1e-6):
        raise ValueError("an H×W×3 image must lie in [0, 1]; pass a normalized image as a 3×H×W tensor instead")
    return hwc.float().clamp(0, 1)


def overlay(image, heatmap, alpha: float = 0.5, colormap: str = "jet") -> np.ndarray:
    """The heat map, coloured by a matplotlib colormap, blended over the image: H×W×3 float RGB in [0, 1].

    ``image``: H×W×3 float in [0, 1], or a normalized 3×H×W tensor. ``heatmap``: H×W in [0, 1].
    ``alpha`` is the heat map's opacity: 0 shows only the image, 1 only the heat map.
    """
    import matplotlib

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    picture = _as_display_image(image).numpy()
    heat = np.asarray(heatmap.detach().cpu() if isinstance(heatmap, torch.Tensor) else heatmap, dtype=np.float32)
    if heat.shape != picture.shape[:2]:
        raise ValueError(f"heatmap must be H×W = {picture.shape[:2]} like the image, got {heat.shape}")
    if heat.size and (np.isnan(heat).any() or heat.min() < -1e-6 or heat.max() > 1 + 1e-6):
        raise ValueError("heatmap must lie in [0, 1] (GradCAM results do)")
    try:
        cmap = matplotlib.colormaps[colormap]
    except KeyError:
        raise ValueError(f"unknown matplotlib colormap {colormap!r}, e.g. 'jet', 'viridis', 'inferno'") from None
    colours = cmap(np.clip(heat, 0.0, 1.0))[..., :3]  # RGBA → RGB
    return ((1.0 - alpha) * picture + alpha * colours).astype(np.float32)
