"""Training targets rendered on the device from a padded batch of boxes.

- :mod:`centernet.targets.centernet`: CenterNet's circular Gaussian heatmap plus per-object size, offset
  and peak index (:func:`render_targets`), and the Gaussian radius formulas.
- :mod:`centernet.targets.ttf`: TTFNet's elliptical Gaussian heatmap plus dense per-cell box targets and
  weights (:func:`render_ttf_targets`).
- :mod:`centernet.targets.configured`: either or a mix of the two, as the ``target`` config section asks
  (:func:`render_training_targets`, input-pixel boxes).
"""

from centernet.targets.centernet import (
    RADIUS_FORMULAS,
    RadiusFormula,
    gaussian_radius,
    gaussian_radius_tensor,
    render_targets,
)
from centernet.targets.configured import render_training_targets
from centernet.targets.ttf import BOX_WEIGHT_MODES, TTF_ALPHA, box_area_weight, render_ttf_targets

__all__ = [
    "BOX_WEIGHT_MODES",
    "RADIUS_FORMULAS",
    "TTF_ALPHA",
    "RadiusFormula",
    "box_area_weight",
    "gaussian_radius",
    "gaussian_radius_tensor",
    "render_targets",
    "render_training_targets",
    "render_ttf_targets",
]
