"""GradCAM for the course: the maps of the whole CAM family (:mod:`eva9.cam`, every name re-exported here) and the
checks that rank them.

- :mod:`eva9.gradcam.checks`: the randomisation sanity check (Adebayo et al., 2018) and the one-fraction deletion
  test against random pixels and random blobs.
- :mod:`eva9.gradcam.curves`: RISE's deletion and insertion curves (Petsiuk et al., 2018) and the maps every method
  must beat, a random map and the Sobel edge map.
- :mod:`eva9.gradcam.ranking`: those measures per method and layer, and how stable their ranking is.
"""

from eva9.cam import (  # noqa: F401 - re-exported, as are the private helpers that eva9.plots and the checks use
    CAM,
    METHODS,
    CAMResult,
    GradCAM,
    _as_display_image,
    _choices,
    _feature_layer_names,
    _LayerOutputs,
    _target_tensor,
    eigencam_map,
    gradcam_map,
    gradcampp_map,
    hirescam_map,
    layercam_map,
    overlay,
    scale_per_image,
    scorecam_map,
    scorecam_masks,
    to_input_size,
    xgradcam_map,
)

from .checks import (
    DeletionResult,
    RandomizationCheck,
    deletion_test,
    map_rank_correlation,
    random_blob_mask,
    random_pixel_mask,
    randomization_check,
    randomized_copy,
    top_pixel_mask,
)
from .curves import FaithfulnessCurve, blurred, deletion_curve, edge_map, insertion_curve, random_map
from .ranking import Faithfulness, faithfulness_scores, ranking_agreement

__all__ = [
    "CAM",
    "METHODS",
    "CAMResult",
    "DeletionResult",
    "Faithfulness",
    "FaithfulnessCurve",
    "GradCAM",
    "RandomizationCheck",
    "blurred",
    "deletion_curve",
    "deletion_test",
    "edge_map",
    "eigencam_map",
    "faithfulness_scores",
    "gradcam_map",
    "gradcampp_map",
    "hirescam_map",
    "insertion_curve",
    "layercam_map",
    "map_rank_correlation",
    "overlay",
    "random_blob_mask",
    "random_map",
    "random_pixel_mask",
    "randomization_check",
    "randomized_copy",
    "ranking_agreement",
    "scale_per_image",
    "scorecam_map",
    "scorecam_masks",
    "to_input_size",
    "top_pixel_mask",
    "xgradcam_map",
]
