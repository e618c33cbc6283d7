"""Heatmap and regression losses and the CenterNet criterion.

Heatmap losses (registry :data:`HEATMAP_LOSSES`, built by :func:`build_heatmap_loss`):
``penalty_reduced_focal`` (CenterNet default), ``focal`` (RetinaNet), ``ghm_c`` (GHM-C),
``ghm_centernet`` (GHM weights in CenterNet's loss, ``docs/loss_study.md``) and ``bce``; all take
logits and compute in float32. Box regression: L1 on size and offset at the object centres
(:func:`reg_l1_loss`) or GIoU on dense ``ltrb`` maps (:func:`ltrb_giou_loss`, TTFNet).
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
from centernet.losses.ghm_centernet import GHMCenterNet
from centernet.losses.ghm_density import GradientDensityLoss
from centernet.losses.giou import ltrb_giou_loss, ltrb_to_boxes
from centernet.losses.registry import HEATMAP_LOSSES, build_heatmap_loss
from centernet.losses.regression import reg_l1_loss

__all__ = [
    "GHMC",
    "HEATMAP_LOSSES",
    "BCEHeatmapLoss",
    "CenterNetCriterion",
    "EpochStatistics",
    "GHMCenterNet",
    "GradientDensityLoss",
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
