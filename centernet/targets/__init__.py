"""Training targets rendered on the device from a padded batch of boxes.

- :mod:`centernet.targets.centernet`: CenterNet's circular Gaussian heatmap plus per-object size, offset
  and peak index (:func:`render_targets`), and the Gaussian radius formulas.
"""

from centernet.targets.centernet import (
    RADIUS_FORMULAS,
    RadiusFormula,
    gaussian_radius,
    gaussian_radius_tensor,
    render_targets,
)

__all__ = [
    "RADIUS_FORMULAS",
    "RadiusFormula",
    "gaussian_radius",
    "gaussian_radius_tensor",
    "render_targets",
]
