"""Heatmap and regression losses and the CenterNet criterion.

Heatmap losses (registry :data:`HEATMAP_LOSSES`, built by :func:`build_heatmap_loss`):
``penalty_reduced_focal`` (CenterNet default), ``focal`` (RetinaNet), ``ghm_c`` (GHM-C) and
``bce``; all take logits, compute in float32 and are called as
``loss(logits, target, mask=None, normaliser=None)``. Box regression: L1 on size and offset at the
object centres (:func:`reg_l1_loss`) or GIoU on dense ``ltrb`` maps (:func:`ltrb_giou_loss`, TTFNet).
"""

from centernet.losses.base import EpochStatistics, HeatmapLoss
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
from centernet.losses.giou import ltrb_giou_loss, ltrb_to_boxes
from centernet.losses.registry import HEATMAP_LOSSES, build_heatmap_loss
from centernet.losses.regression import reg_l1_loss

__all__ = [
    "GHMC",
    "HEATMAP_LOSSES",
    "BCEHeatmapLoss",
    "CenterNetCriterion",
    "EpochStatistics",
    "HeatmapLoss",
    "PenaltyReducedFocalLoss",
    "SigmoidFocalLoss",
    "binary_cross_entropy",
    "build_heatmap_loss",
    "ltrb_giou_loss",
    "ltrb_to_boxes",
    "penalty_reduced_focal_loss",
    "penalty_reduced_focal_loss_reference",
    "reg_l1_loss",
    "sigmoid_focal_loss",
]
