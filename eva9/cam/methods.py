"""The formulas of the CAM family, one short function each: a layer's maps from its activations ``A`` (B×K×h×w)
and, for the gradient methods, the target score's gradients ``G = dy/dA`` (same shape); ScoreCAM instead takes the
scores of the input masked by each channel. Every function returns maps (B, H, W) in [0, 1]: the ReLU of the
method's weighted sum, upsampled bilinearly to ``size`` (None: the layer's own h×w) by :func:`to_input_size`, which
also scales each image's map to [0, 1].

The definitions follow the papers as the ``grad-cam`` package (1.5.7) implements them, so the tests can compare the
two; where eva9 chooses differently the function's docstring says so.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "eigencam_map",
    "gradcam_map",
    "gradcampp_map",
    "hirescam_map",
    "layercam_map",
    "scale_per_image",
    "scorecam_map",
    "scorecam_masks",
    "to_input_size",
    "xgradcam_map",
]


def scale_per_image(maps: torch.Tensor) -> torch.Tensor:
    """Min-max scale each (H, W) map of a (B, H, W) batch to [0, 1]; a constant map (e.g. all zero) becomes zero."""
    flat = maps.flatten(1)
    low = flat.min(dim=1).values[:, None, None]
    span = flat.max(dim=1).values[:, None, None] - low
    return torch.where(span > 0, (maps - low) / torch.where(span > 0, span, torch.ones_like(span)), 0.0)


def to_input_size(cam: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Maps (B, h, w) upsampled bilinearly to ``size`` (None: kept as they are), then scaled per image to [0, 1].

    ``grad-cam`` scales before it resizes, so a peak that falls between the output's pixels ends below 1 (its
    EigenCAM maps of the course network peaked at 0.64-0.75); scaling after upsampling makes every map span
    [0, 1] at the size it is shown. The two differ by that affine rescaling only.
    """
    if size is not None and tuple(size) != tuple(cam.shape[-2:]):
        cam = F.interpolate(cam[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    return scale_per_image(cam)


def _checked(activations: torch.Tensor, gradients: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if activations.ndim != 4 or activations.shape != gradients.shape:
        raise ValueError(
            f"activations and gradients must be equal B×K×h×w tensors, "
            f"got {tuple(activations.shape)} and {tuple(gradients.shape)}"
        )
    return activations.float(), gradients.float()


# The book includes these functions and keeps their lines within its page.
# fmt: off
def gradcam_map(
    activations: torch.Tensor,
    gradients: torch.Tensor,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """GradCAM (Selvaraju et al., 2017): channels weighted by their mean gradient."""
    A, G = _checked(activations, gradients)
    weights = G.mean(dim=(2, 3))  # B×K: how much each channel matters
    cam = F.relu(torch.einsum("bk,bkhw->bhw", weights, A))
    return to_input_size(cam, size)


def gradcampp_map(
    activations: torch.Tensor,
    gradients: torch.Tensor,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """GradCAM++ (Chattopadhay et al., 2018): positive gradients, each position
    weighted by alpha = G² / (2G² + ΣA·G³), summed per channel."""
    A, G = _checked(activations, gradients)
    total = A.sum(dim=(2, 3), keepdim=True)  # ΣA over the positions
    alpha = G**2 / (2 * G**2 + total * G**3 + 1e-6)
    alpha = torch.where(G != 0, alpha, 0.0)
    weights = (F.relu(G) * alpha).sum(dim=(2, 3))
    cam = F.relu(torch.einsum("bk,bkhw->bhw", weights, A))
    return to_input_size(cam, size)


def xgradcam_map(
    activations: torch.Tensor,
    gradients: torch.Tensor,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """XGradCAM (Fu et al., 2020): gradients weighted by the channel's
    normalised activations, w = Σ G·A / ΣA."""
    A, G = _checked(activations, gradients)
    total = A.sum(dim=(2, 3)) + 1e-7
    weights = (G * A).sum(dim=(2, 3)) / total
    cam = F.relu(torch.einsum("bk,bkhw->bhw", weights, A))
    return to_input_size(cam, size)


def hirescam_map(
    activations: torch.Tensor,
    gradients: torch.Tensor,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """HiResCAM (Draelos and Carin, 2020): each position's activations times
    its own gradients, summed over the channels."""
    A, G = _checked(activations, gradients)
    cam = F.relu((G * A).sum(dim=1))
    return to_input_size(cam, size)


def layercam_map(
    activations: torch.Tensor,
    gradients: torch.Tensor,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """LayerCAM (Jiang et al., 2021): each position's activations times its
    own positive gradients, summed over the channels."""
    A, G = _checked(activations, gradients)
    cam = F.relu((F.relu(G) * A).sum(dim=1))
    return to_input_size(cam, size)
# fmt: on


def eigencam_map(activations: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """EigenCAM (Muhammad and Yeasin, 2020): each position's activations projected on their first principal
    component (over the h·w positions, centred), ReLU; no class, no gradient.

    The sign of a principal component is arbitrary; ``grad-cam`` takes whatever sign LAPACK returns, so its map
    may show the complement of the salient region. eva9 orients the component so that its loadings sum to a
    non-negative number: a position where every channel is more active projects higher.
    """
    if activations.ndim != 4:
        raise ValueError(f"activations must be B×K×h×w, got {tuple(activations.shape)}")
    A = torch.nan_to_num(activations.float()).flatten(2).transpose(1, 2)  # B×(h·w)×K
    centred = A - A.mean(dim=1, keepdim=True)
    component = torch.linalg.svd(centred, full_matrices=False).Vh[:, 0]  # B×K
    component = component * torch.where(component.sum(dim=1, keepdim=True) < 0, -1.0, 1.0)
    cam = F.relu(torch.einsum("bpk,bk->bp", centred, component)).view(activations.shape[0], *activations.shape[2:])
    return to_input_size(cam, size)


def scorecam_masks(activations: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """ScoreCAM's masks (B, K, H, W): each channel upsampled bilinearly to ``size`` and scaled to [0, 1].

    The masks are upsampled with ``align_corners=True``, as ``grad-cam`` does (``UpsamplingBilinear2d``; the
    final map, like every other method's, has half-pixel centres): at 16×16 → 32×32 the two choices change the
    maps enough (per-image correlation 0.98) that eva9 follows the reference here.
    """
    batch, channels = activations.shape[:2]
    up = F.interpolate(activations.float(), size=tuple(size), mode="bilinear", align_corners=True)
    return scale_per_image(up.flatten(0, 1)).view(batch, channels, *size)


def scorecam_map(activations: torch.Tensor, scores: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """ScoreCAM (Wang et al., 2020): channels weighted by the softmax over channels of the target's logit when
    the input is multiplied by that channel's mask (``scores``, B×K, see :func:`scorecam_masks`)."""
    if activations.ndim != 4 or tuple(scores.shape) != tuple(activations.shape[:2]):
        raise ValueError(f"scores must be B×K for activations B×K×h×w, got {tuple(scores.shape)}")
    weights = scores.float().softmax(dim=1)
    cam = F.relu(torch.einsum("bk,bkhw->bhw", weights, activations.float()))
    return to_input_size(cam, size)
