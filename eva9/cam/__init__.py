"""Class activation maps: the CAM family (GradCAM, GradCAM++, XGradCAM, HiResCAM, LayerCAM, EigenCAM, ScoreCAM) at
any number of layers at once, and the overlay that shows a map on its image. :mod:`eva9.gradcam` re-exports all of
it beside the checks of the maps.

- :mod:`eva9.cam.methods`: each method's formula, one short function (:func:`gradcam_map`, ...).
- :mod:`eva9.cam.hooks`: the forward hooks, present only while a call runs.
- :mod:`eva9.cam.explainer`: :class:`CAM` (and :class:`GradCAM`, its ``method="gradcam"``), every layer's map from
  one forward pass and at most one backward pass, and :class:`CAMResult`.
- :mod:`eva9.cam.overlay`: :func:`overlay`, a map blended over its image.
"""

from .explainer import CAM, METHODS, CAMResult, GradCAM, _choices, _feature_layer_names, _target_tensor  # noqa: F401
from .hooks import _LayerOutputs  # noqa: F401 - the private helpers are for eva9.gradcam and eva9.plots
from .methods import (
    eigencam_map,
    gradcam_map,
    gradcampp_map,
    hirescam_map,
    layercam_map,
    scale_per_image,
    scorecam_map,
    scorecam_masks,
    to_input_size,
    xgradcam_map,
)
from .overlay import _as_display_image, overlay  # noqa: F401

__all__ = [
    "CAM",
    "METHODS",
    "CAMResult",
    "GradCAM",
    "eigencam_map",
    "gradcam_map",
    "gradcampp_map",
    "hirescam_map",
    "layercam_map",
    "overlay",
    "scale_per_image",
    "scorecam_map",
    "scorecam_masks",
    "to_input_size",
    "xgradcam_map",
]
