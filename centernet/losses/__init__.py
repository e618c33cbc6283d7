"""Heatmap and regression losses and the CenterNet criterion.

Heatmap losses (registry :data:`HEATMAP_LOSSES`, built by :func:`build_heatmap_loss`):
``penalty_reduced_focal`` (CenterNet default), ``focal`` (RetinaNet), ``ghm_c`` (GHM-C) and
``bce``; all take logits, compute in float32 and are called as
``loss(logits, target, mask=None, normaliser=None)``.
"""

from centernet.losses.bce import BCEHeatmapLoss, binary_cross_entropy
from centernet.losses.criterion import CenterNetCriterion
from centernet.losses.focal import (
    PenaltyReducedFocalLoss,
    SigmoidFocalLoss,
    penalty_reduced_focal_loss,
    penalty_reduced_focal_loss_reference,
    sigmoid_focal_loss,
)
from centernet.losses.ghm import GHMC
from centernet.losses.registry import HEATMAP_LOSSES, build_heatmap_loss
from centernet.losses.regression import reg_l1_loss

__all__ = [
    "GHMC",
    "HEATMAP_LOSSES",
    "BCEHeatmapLoss",
    "CenterNetCriterion",
    "PenaltyReducedFocalLoss",
    "SigmoidFocalLoss",
    "binary_cross_entropy",
    "build_heatmap_loss",
    "penalty_reduced_focal_loss",
    "penalty_reduced_focal_loss_reference",
    "reg_l1_loss",
    "sigmoid_focal_loss",
]
