"""Build the detector that the ``model`` config section describes (the one place that reads it)."""

from __future__ import annotations

import logging

from centernet.config.schema import Config
from centernet.models.detector import CenterNet, build_centernet
from centernet.models.init import freeze_batch_norm_
from centernet.models.original_checkpoint import load_original_centernet_checkpoint

logger = logging.getLogger(__name__)


def build_model(cfg: Config, num_classes: int) -> CenterNet:
    """The detector described by ``cfg.model`` for ``num_classes`` classes."""
    model_cfg = cfg.model
    model = build_centernet(
        backbone=model_cfg.backbone.type,
        backbone_weights=model_cfg.backbone.weights,
        neck=model_cfg.neck.type,
        neck_channels=tuple(model_cfg.neck.channels),
        num_classes=num_classes,
        head_conv=model_cfg.head.head_conv,
        prior_prob=model_cfg.head.prior_prob,
        box=model_cfg.head.box,
        ltrb_scale=model_cfg.head.ltrb_scale,
    )
    if model_cfg.init_checkpoint:
        report = load_original_centernet_checkpoint(model, model_cfg.init_checkpoint)
        logger.info(
            "initialised from %s: %d tensors loaded, %d skipped (%s)",
            model_cfg.init_checkpoint, len(report.loaded), len(report.skipped), ", ".join(report.skipped) or "none",
        )
    if model_cfg.backbone.frozen_bn:
        frozen = freeze_batch_norm_(model.backbone)
        logger.info("froze %d BatchNorm layers of the backbone (model.backbone.frozen_bn)", frozen)
    if model.output_stride != cfg.data.down_ratio:
        raise ValueError(
            f"data.down_ratio={cfg.data.down_ratio} but model {model_cfg.backbone.type}+{model_cfg.neck.type} "
            f"has output stride {model.output_stride}"
        )
    return model
