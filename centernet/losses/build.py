"""Build the criterion that the ``loss`` config section describes (the one place that reads it)."""

from __future__ import annotations

import dataclasses

from centernet.config.schema import Config
from centernet.losses.criterion import CenterNetCriterion
from centernet.losses.registry import build_heatmap_loss


def build_criterion(cfg: Config) -> CenterNetCriterion:
    """The loss of ``cfg.loss``: the heatmap loss picked by ``loss.heatmap.type`` plus L1 size/offset."""
    heatmap_params = {k: v for k, v in dataclasses.asdict(cfg.loss.heatmap).items() if k not in ("type", "weight")}
    heatmap_loss = build_heatmap_loss(cfg.loss.heatmap.type, **heatmap_params)
    return CenterNetCriterion(
        heatmap_loss,
        heatmap_weight=cfg.loss.heatmap.weight,
        size_weight=cfg.loss.size.weight,
        offset_weight=cfg.loss.offset.weight,
    )
