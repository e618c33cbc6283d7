"""Registry of heatmap losses, selectable by name from the config (``loss.heatmap.type``).

Every entry builds a :class:`centernet.losses.base.HeatmapLoss` called as
``loss(logits, target, mask=None, normaliser=None) -> Tensor[]`` with ``logits``/``target``
``[B, C, H, W]`` and ``mask`` ``[B, C, H, W]`` or ``[B, 1, H, W]``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import Tensor

from centernet.losses.base import HeatmapLoss
from centernet.losses.bce import BCEHeatmapLoss
from centernet.losses.focal import PenaltyReducedFocalLoss, SigmoidFocalLoss
from centernet.losses.ghm import GHMC
from centernet.losses.ghm_centernet import GHMCenterNet

HEATMAP_LOSSES: dict[str, Callable[..., HeatmapLoss]] = {
    "penalty_reduced_focal": PenaltyReducedFocalLoss,  # alpha, beta
    "focal": SigmoidFocalLoss,  # alpha, gamma
    "ghm_c": GHMC,  # bins, momentum, density, ema_init, switch_epoch, switch_tolerance
    "ghm_centernet": GHMCenterNet,  # beta + the ghm_c keys
    "bce": BCEHeatmapLoss,  # no parameters
}

_ACCEPTED_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _accepted_params(factory: Callable[..., HeatmapLoss]) -> list[str]:
    """Names of the keyword arguments a loss factory takes."""
    return [p.name for p in inspect.signature(factory).parameters.values() if p.kind in _ACCEPTED_KINDS]


def build_heatmap_loss(
    name: str, *, reduce_counts: Callable[[Tensor], Tensor] | None = None, **params: object
) -> HeatmapLoss:
    """Build the heatmap loss registered under ``name``.

    Args:
        name: a key of :data:`HEATMAP_LOSSES` (``penalty_reduced_focal``, ``focal``, ``ghm_c``,
            ``ghm_centernet``, ``bce``).
        reduce_counts: under DDP, the all-reduce sum for losses that keep batch statistics (a loss
            whose factory takes a ``reduce_counts`` keyword gets it; the others need none).
        **params: that loss's own parameters (e.g. ``alpha=2.0, beta=4.0``); config-only keys such
            as ``type`` and ``weight`` must be removed by the caller.

    Returns:
        a :class:`HeatmapLoss` called as ``loss(logits, target, mask=None, normaliser=None) -> FloatTensor[]``.

    Raises:
        ValueError: for an unknown name (the message lists the valid names).
        TypeError: for a parameter the loss does not take (the message names it and the valid ones).
    """
    if name not in HEATMAP_LOSSES:
        raise ValueError(f"unknown heatmap loss {name!r}; valid names: {sorted(HEATMAP_LOSSES)}")
    factory = HEATMAP_LOSSES[name]
    accepted = [p for p in _accepted_params(factory) if p != "reduce_counts"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise TypeError(f"heatmap loss {name!r} got unknown parameter(s) {unknown}; it accepts {accepted or 'none'}")
    if reduce_counts is not None and "reduce_counts" in _accepted_params(factory):
        params["reduce_counts"] = reduce_counts
    return factory(**params)
