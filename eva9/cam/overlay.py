"""The overlay that shows a map on its image."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["overlay"]


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
