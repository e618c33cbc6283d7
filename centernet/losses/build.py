"""Build the criterion that the ``loss`` config section describes (the one place that reads it)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from torch import Tensor

from centernet.config.schema import Config
from centernet.losses.criterion import CenterNetCriterion
from centernet.losses.registry import build_heatmap_loss


def build_criterion(
    cfg: Config, *, all_reduce_sum: Callable[[Tensor], Tensor] | None = None, world_size: int = 1
) -> CenterNetCriterion:
    """The loss of ``cfg.loss``: the heatmap loss picked by ``loss.heatmap.type`` plus L1 size/offset.

    Args:
        cfg: the config (only ``cfg.loss`` is read).
        all_reduce_sum: under DDP, a function summing a tensor over the ranks: the criterion's
            normalisers and the statistics of losses that keep any (GHM-C's histogram) become global.
        world_size: number of ranks.
    """
    heatmap_params = {k: v for k, v in dataclasses.asdict(cfg.loss.heatmap).items() if k not in ("type", "weight")}
    heatmap_loss = build_heatmap_loss(cfg.loss.heatmap.type, reduce_counts=all_reduce_sum, **heatmap_params)
    return CenterNetCriterion(
        heatmap_loss,
        heatmap_weight=cfg.loss.heatmap.weight,
        size_weight=cfg.loss.size.weight,
        offset_weight=cfg.loss.offset.weight,
        all_reduce_sum=all_reduce_sum,
        world_size=world_size,
    )
