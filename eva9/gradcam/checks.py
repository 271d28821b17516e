"""Two checks that a map means something, for every method of :class:`eva9.cam.CAM`.

- The randomisation sanity check (Adebayo et al., 2018): maps of the trained network against those of a copy whose
  weights are random (:func:`randomized_copy`, :func:`randomization_check`), compared by the rank correlation of
  each image's two maps (:func:`map_rank_correlation`). Maps that survive randomisation explain the architecture and
  the input, not what the network learned.
- The deletion test: blank the pixels a map rates highest, and as baselines as many random pixels or random blobs,
  and measure how much the explained class's probability drops (:func:`deletion_test`).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eva9.cam import CAM, CAMResult, _choices, _LayerOutputs, _target_tensor

__all__ = [
    "DeletionResult",
    "RandomizationCheck",
    "deletion_test",
    "map_rank_correlation",
    "random_blob_mask",
    "random_pixel_mask",
    "randomization_check",
    "randomized_copy",
    "top_pixel_mask",
]


# ------------------------------------------------------------------------------------------ checking the maps
#
# Two checks that a GradCAM map says something about the model (Adebayo et al. 2018, "Sanity checks for saliency
# maps"; Samek et al. 2017 / Petsiuk et al. 2018 for deletion): the maps must change when the weights are
# randomised, and removing the pixels the map rates highest must hurt the class more than removing random pixels.


def randomized_copy(model: nn.Module, layers: Sequence[str] | None = None, seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` with the weights of ``layers`` (None: every layer) re-initialised from ``seed``.

    Every submodule of a named layer that has ``reset_parameters`` (convolutions, linear layers, batch norms, whose
    running statistics reset too) draws fresh default-initialised weights. ``layers=None`` is the paper's full
    randomisation; randomising ``["fc"]``, then ``["fc", "layer4"]``, ... is its cascading randomisation. The
    original model is untouched, and the same seed gives the same copy.
    """
    duplicate = copy.deepcopy(model)
    by_name = dict(duplicate.named_modules())
    names = [""] if layers is None else list(layers)
    for name in names:
        if name not in by_name:
            raise ValueError(f"model has no layer named {name!r}; choose from {_choices(model)}")
    cuda = sorted({p.device.index or 0 for p in duplicate.parameters() if p.is_cuda})
    with torch.random.fork_rng(devices=cuda), torch.no_grad():  # the caller's random state is left as it was
        torch.manual_seed(seed)
        done: set[int] = set()
        for name in names:
            for module in by_name[name].modules():
                if id(module) not in done and callable(getattr(module, "reset_parameters", None)):
                    module.reset_parameters()
                    done.add(id(module))
    return duplicate


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks of a 1-D tensor, tied values sharing the mean of their ranks (as scipy.stats.rankdata)."""
    unique, inverse, counts = torch.unique(values, sorted=True, return_inverse=True, return_counts=True)
    below = torch.cumsum(counts, 0) - counts  # how many values are smaller than each distinct value
    return (below + (counts + 1) / 2).double()[inverse]


def map_rank_correlation(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of each pair of maps in two (B, H, W) batches: (B,), NaN where a map is constant."""
    if first.shape != second.shape or first.ndim != 3:
        raise ValueError(f"give two equal B×H×W batches of maps, got {tuple(first.shape)} and {tuple(second.shape)}")
    result = torch.empty(first.shape[0], dtype=torch.float64)
    for i, (a, b) in enumerate(zip(first.detach().flatten(1).cpu(), second.detach().flatten(1).cpu())):
        ra, rb = _average_ranks(a), _average_ranks(b)
        ra, rb = ra - ra.mean(), rb - rb.mean()
        denominator = (ra.square().sum() * rb.square().sum()).sqrt()
        result[i] = (ra * rb).sum() / denominator if denominator > 0 else float("nan")
    return result


class RandomizationCheck(NamedTuple):
    """Per layer, the Spearman correlation (B,) of each image's map from the trained and the randomised model."""

    correlations: dict[str, torch.Tensor]
    targets: torch.Tensor

    def mean(self) -> dict[str, float]:
        """Layer → mean correlation over the images whose maps are not constant (NaN if none is)."""
        return {
            layer: float(np.nanmean(values.numpy())) if not values.isnan().all() else float("nan")
            for layer, values in self.correlations.items()
        }


def _cams_in_batches(
    model: nn.Module, images: torch.Tensor, layers: list[str], targets, batch_size: int, method: str = "gradcam"
) -> CAMResult:
    """One CAMResult of ``method`` for all images, computed ``batch_size`` images at a time."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    wanted = _target_tensor(targets, images.shape[0])
    parts = []
    with CAM(model, layers, method) as cam:
        for start in range(0, images.shape[0], batch_size):
            chunk = None if wanted is None else wanted[start : start + batch_size]
            parts.append(cam(images[start : start + batch_size], chunk))
    maps = {layer: torch.cat([part[layer] for part in parts]) for layer in layers}
    return CAMResult(maps, torch.cat([p.logits for p in parts]), torch.cat([p.targets for p in parts]))


def randomization_check(
    model: nn.Module,
    images: torch.Tensor,
    layers: Sequence[str] | str = ("layer1", "layer2", "layer3", "layer4"),
    *,
    randomize: Sequence[str] | None = None,
    targets: int | Sequence[int] | torch.Tensor | None = None,
    seed: int = 0,
    batch_size: int = 64,
    method: str = "gradcam",
) -> RandomizationCheck:
    """How much each layer's maps (``method``: one of :data:`eva9.cam.METHODS`) change when the model's weights are
    randomised (Adebayo et al. 2018).

    Maps come from ``model`` and from ``randomized_copy(model, randomize, seed)`` (``randomize=None``: every
    weight) for the same target class, by default the trained model's prediction. A map that explains the
    trained model correlates little with the random model's (mean near 0); a correlation near 1 means the map
    shows the image or the architecture, not what the network learned.
    """
    layers = [layers] if isinstance(layers, str) else list(layers)
    trained = _cams_in_batches(model, images, layers, targets, batch_size, method)
    random_model = randomized_copy(model, randomize, seed)
    randomised = _cams_in_batches(random_model, images, layers, trained.targets, batch_size, method)
    correlations = {layer: map_rank_correlation(trained[layer], randomised[layer]) for layer in layers}
    return RandomizationCheck(correlations, trained.targets.cpu())


def top_pixel_mask(maps: torch.Tensor, fraction: float) -> torch.Tensor:
    """Boolean (B, H, W): each map's ``round(fraction·H·W)`` highest pixels (ties: the earlier pixel in row order)."""
    _check_fraction(fraction)
    batch, height, width = maps.shape
    k = round(fraction * height * width)
    order = torch.argsort(-maps.detach().flatten(1).float(), dim=1, stable=True)[:, :k]
    mask = torch.zeros(batch, height * width, dtype=torch.bool, device=maps.device)
    return mask.scatter_(1, order, True).view(batch, height, width)


def random_pixel_mask(shape: tuple[int, int, int], fraction: float, seed: int = 0) -> torch.Tensor:
    """Boolean (B, H, W) with ``round(fraction·H·W)`` pixels per image chosen uniformly at random from ``seed``."""
    _check_fraction(fraction)
    batch, height, width = shape
    k = round(fraction * height * width)
    generator = torch.Generator().manual_seed(seed)
    order = torch.rand(batch, height * width, generator=generator).argsort(dim=1)[:, :k]
    mask = torch.zeros(batch, height * width, dtype=torch.bool)
    return mask.scatter_(1, order, True).view(batch, height, width)


def random_blob_mask(
    shape: tuple[int, int, int], fraction: float, cells: tuple[int, int], seed: int = 0
) -> torch.Tensor:
    """Boolean (B, H, W) like :func:`top_pixel_mask` of a random map: uniform noise on a ``cells`` grid (a layer's
    h×w), upsampled bilinearly as GradCAM upsamples its maps, so the blanked pixels form blobs of a map's grain.
    """
    batch, height, width = shape
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(batch, 1, *cells, generator=generator)
    maps = F.interpolate(noise, size=(height, width), mode="bilinear", align_corners=False)[:, 0]
    return top_pixel_mask(maps, fraction)


def _check_fraction(fraction: float) -> None:
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")


class DeletionResult(NamedTuple):
    """Probability of each image's target class (B,): intact, and with as many pixels blanked three ways: those the
    map rates highest, random scattered pixels, and random blobs of the map's grain (see :func:`deletion_test`).
    """

    targets: torch.Tensor
    intact: torch.Tensor
    top_blanked: torch.Tensor
    random_blanked: torch.Tensor
    blob_blanked: torch.Tensor

    @property
    def top_drop(self) -> float:
        """Mean drop in the target's probability when the pixels the map rates highest are blanked."""
        return float((self.intact - self.top_blanked).mean())

    @property
    def random_drop(self) -> float:
        """Mean drop in the target's probability when as many random, scattered pixels are blanked."""
        return float((self.intact - self.random_blanked).mean())

    @property
    def blob_drop(self) -> float:
        """Mean drop in the target's probability when as many pixels in random blobs of the map's grain are blanked."""
        return float((self.intact - self.blob_blanked).mean())


@contextlib.contextmanager
def _in_eval_mode(model: nn.Module) -> Iterator[torch.device]:
    """Every module in eval mode inside the block, each back in its own mode after; yields the model's device."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield next((p.device for p in model.parameters()), torch.device("cpu"))
    finally:
        for module, training in modes:
            module.training = training


@torch.no_grad()
def _probabilities(model: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Softmax probabilities (B, classes) on the CPU, in eval mode; the modules' modes are restored after."""
    with _in_eval_mode(model) as device:
        probs = [
            model(images[start : start + batch_size].to(device)).float().softmax(dim=1).cpu()
            for start in range(0, images.shape[0], batch_size)
        ]
    return torch.cat(probs)


def _class_probability(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Softmax probability of ``targets`` for each image, in eval mode; the modules' modes are restored after."""
    return _probabilities(model, images, batch_size).gather(1, targets.cpu()[:, None])[:, 0]


def deletion_test(
    model: nn.Module,
    images: torch.Tensor,
    layer: str = "layer4",
    *,
    fraction: float = 0.2,
    targets: int | Sequence[int] | torch.Tensor | None = None,
    seed: int = 0,
    batch_size: int = 64,
) -> DeletionResult:
    """Blank the ``fraction`` of pixels ``layer``'s GradCAM map rates highest, then as many random pixels, and
    measure the target class's probability each time (default target: the prediction on the intact image).

    Blanking sets all three channels of a pixel to 0 in normalised space, i.e. to the training set's mean colour,
    so the model sees "no information" rather than black. The map is upsampled to the image size first. Two random
    baselines blank as many pixels, drawn from ``seed``: scattered pixels (``random_blanked``), and blobs, the top
    pixels of a random map on the layer's own grid upsampled like a GradCAM map (``blob_blanked``). Scattered
    pixels make a speckled image unlike any training image, which can hurt a CNN more than removing the object;
    blobs differ from the map's pixels only in where they are. A faithful map has ``top_drop`` above both.
    """
    cams = _cams_in_batches(model, images, [layer], targets, batch_size)
    chosen = cams.targets.cpu()
    images = images.detach().cpu()
    top = top_pixel_mask(cams[layer].cpu(), fraction)
    shape = (top.shape[0], top.shape[1], top.shape[2])
    scattered = random_pixel_mask(shape, fraction, seed)
    blobs = random_blob_mask(shape, fraction, _layer_grid(model, layer, images[:1]), seed)
    return DeletionResult(
        targets=chosen,
        intact=_class_probability(model, images, chosen, batch_size),
        top_blanked=_class_probability(model, images.masked_fill(top[:, None], 0.0), chosen, batch_size),
        random_blanked=_class_probability(model, images.masked_fill(scattered[:, None], 0.0), chosen, batch_size),
        blob_blanked=_class_probability(model, images.masked_fill(blobs[:, None], 0.0), chosen, batch_size),
    )


def _layer_grid(model: nn.Module, layer: str, image: torch.Tensor) -> tuple[int, int]:
    """The h×w of ``layer``'s feature map for an image of this size (from one forward pass, hooks released)."""
    module = dict(model.named_modules())[layer]
    with torch.no_grad(), _in_eval_mode(model) as device, _LayerOutputs({layer: module}) as kept:
        model(image.to(device))
    return tuple(kept.outputs[layer][0].shape[-2:])
