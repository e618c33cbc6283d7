"""Build the criterion that the ``loss`` config section describes (the one place that reads it)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from torch import Tensor

from centernet.config.schema import Config
from centernet.losses.box_terms import BoxTerms, CentreL1Terms, LtrbGIoUTerms
from centernet.losses.criterion import CenterNetCriterion
from centernet.losses.registry import build_heatmap_loss


def build_criterion(
    cfg: Config, *, all_reduce_sum: Callable[[Tensor], Tensor] | None = None, world_size: int = 1
) -> CenterNetCriterion:
    """The loss of ``cfg.loss``: the heatmap loss picked by ``loss.heatmap.type`` plus the box terms.

    The box terms follow ``loss.box.type``: ``l1`` (CenterNet's size and offset L1, weighted by
    ``loss.size.weight`` and ``loss.offset.weight`` times ``loss.box.weight``) or ``giou`` (TTFNet's GIoU
    of the ``ltrb`` maps, weighted by ``loss.box.weight``).

    Args:
        cfg: the config (``cfg.loss`` and ``cfg.data.down_ratio`` are read).
        all_reduce_sum: under DDP, a function summing a tensor over the ranks: the criterion's
            normalisers and the statistics of losses that keep any (GHM-C's histogram) become global.
        world_size: number of ranks.
    """
    heatmap_params = {k: v for k, v in dataclasses.asdict(cfg.loss.heatmap).items() if k not in ("type", "weight")}
    heatmap_loss = build_heatmap_loss(cfg.loss.heatmap.type, reduce_counts=all_reduce_sum, **heatmap_params)
    return CenterNetCriterion(
        heatmap_loss,
        heatmap_weight=cfg.loss.heatmap.weight,
        box_terms=build_box_terms(cfg),
        all_reduce_sum=all_reduce_sum,
        world_size=world_size,
    )


def build_box_terms(cfg: Config) -> BoxTerms:
    """The box-regression strategy of ``loss.box.type`` (see :mod:`centernet.losses.box_terms`)."""
    box = cfg.loss.box
    if box.type == "giou":
        return LtrbGIoUTerms(weight=box.weight, down_ratio=cfg.data.down_ratio)
    loss = cfg.loss
    return CentreL1Terms(size_weight=loss.size.weight * box.weight, offset_weight=loss.offset.weight * box.weight)
