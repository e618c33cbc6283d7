"""Registry of heatmap losses, selectable by name from the config (``loss.heatmap.type``).

Every entry builds an ``nn.Module`` called as ``loss(logits, target, mask=None, normaliser=None) ->
Tensor[]`` with ``logits``/``target`` ``[B, C, H, W]``, ``mask`` ``[B, C, H, W]`` or ``[B, 1, H, W]``
and ``normaliser`` an optional float32 scalar tensor replacing the locally counted divisor.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from centernet.losses.bce import BCEHeatmapLoss
from centernet.losses.focal import PenaltyReducedFocalLoss, SigmoidFocalLoss
from centernet.losses.ghm import GHMC

HEATMAP_LOSSES: dict[str, Callable[..., nn.Module]] = {
    "penalty_reduced_focal": PenaltyReducedFocalLoss,  # alpha, beta
    "focal": SigmoidFocalLoss,  # alpha, gamma
    "ghm_c": GHMC,  # bins, momentum, density
    "bce": BCEHeatmapLoss,  # no parameters
}

_ACCEPTED_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _accepted_params(factory: Callable[..., nn.Module]) -> list[str]:
    """Names of the keyword arguments a loss factory takes."""
    return [p.name for p in inspect.signature(factory).parameters.values() if p.kind in _ACCEPTED_KINDS]


def build_heatmap_loss(name: str, **params: object) -> nn.Module:
    """Build the heatmap loss registered under ``name``.

    Args:
        name: a key of :data:`HEATMAP_LOSSES` (``penalty_reduced_focal``, ``focal``, ``ghm_c``,
            ``bce``).
        **params: that loss's own parameters (e.g. ``alpha=2.0, beta=4.0``); config-only keys such
            as ``type`` and ``weight`` must be removed by the caller.

    Returns:
        nn.Module called as ``loss(logits, target, mask=None, normaliser=None) -> FloatTensor[]``.

    Raises:
        ValueError: for an unknown name (the message lists the valid names).
        TypeError: for a parameter the loss does not take (the message names it and the valid ones).
    """
    if name not in HEATMAP_LOSSES:
        raise ValueError(f"unknown heatmap loss {name!r}; valid names: {sorted(HEATMAP_LOSSES)}")
    factory = HEATMAP_LOSSES[name]
    accepted = _accepted_params(factory)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise TypeError(f"heatmap loss {name!r} got unknown parameter(s) {unknown}; it accepts {accepted or 'none'}")
    return factory(**params)
