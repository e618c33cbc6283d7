"""Plain binary cross-entropy on heatmap logits: the baseline heatmap loss (registry name ``bce``)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from centernet.losses.base import HeatmapLoss, count_valid
from centernet.losses.masking import check_heatmap_inputs, expand_mask, safe_denominator


def binary_cross_entropy(
    logits: Tensor, target: Tensor, mask: Tensor | None = None, normaliser: Tensor | None = None
) -> Tensor:
    """Mean BCE-with-logits over the masked elements, against soft (Gaussian) targets.

    ``L = sum(BCE(x, y) * m) / sum(m)``; 0 when no element counts (empty input or all masked).

    Args:
        logits: FloatTensor[B, C, H, W] raw heatmap scores (computed in float32).
        target: FloatTensor[B, C, H, W] targets in [0, 1].
        mask: optional Tensor[B, C, H, W] or [B, 1, H, W]; 1 = counts, 0 = ignored.
        normaliser: FloatTensor[] to divide by instead of ``sum(m)`` (e.g. all-reduced over DDP ranks).

    Returns:
        FloatTensor[] (float32 scalar).
    """
    check_heatmap_inputs(logits, target, mask, loss="binary_cross_entropy")
    x = logits.float()
    m = expand_mask(mask, x)
    loss = F.binary_cross_entropy_with_logits(x, target.float(), reduction="none")  # [B, C, H, W]
    return (loss * m).sum() / safe_denominator(m.sum() if normaliser is None else normaliser)


class BCEHeatmapLoss(HeatmapLoss):
    """Module form of :func:`binary_cross_entropy` (no parameters), normalised by the valid elements."""

    def normaliser(self, target: Tensor, mask: Tensor | None) -> Tensor:
        """The number of masked-in elements."""
        return count_valid(target, mask)

    def forward(
        self, logits: Tensor, target: Tensor, mask: Tensor | None = None, normaliser: Tensor | None = None
    ) -> Tensor:
        """See :func:`binary_cross_entropy`; returns FloatTensor[]."""
        return binary_cross_entropy(logits, target, mask, normaliser)
