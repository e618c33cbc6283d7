"""Plain binary cross-entropy on heatmap logits: the baseline heatmap loss (registry name ``bce``)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from centernet.losses.masking import check_heatmap_inputs, expand_mask, safe_denominator


def binary_cross_entropy(logits: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean BCE-with-logits over the masked elements, against soft (Gaussian) targets.

    ``L = sum(BCE(x, y) * m) / sum(m)``; 0 when no element counts (empty input or all masked).

    Args:
        logits: FloatTensor[B, C, H, W] raw heatmap scores (computed in float32).
        target: FloatTensor[B, C, H, W] targets in [0, 1].
        mask: optional Tensor[B, C, H, W] or [B, 1, H, W]; 1 = counts, 0 = ignored.

    Returns:
        FloatTensor[] (float32 scalar).
    """
    check_heatmap_inputs(logits, target, mask, loss="binary_cross_entropy")
    x = logits.float()
    m = expand_mask(mask, x)
    loss = F.binary_cross_entropy_with_logits(x, target.float(), reduction="none")  # [B, C, H, W]
    return (loss * m).sum() / safe_denominator(m.sum())


class BCEHeatmapLoss(nn.Module):
    """Module form of :func:`binary_cross_entropy` (no parameters)."""

    def forward(self, logits: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        """See :func:`binary_cross_entropy`; returns FloatTensor[]."""
        return binary_cross_entropy(logits, target, mask)
