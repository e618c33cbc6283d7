"""Plain binary cross-entropy on heatmap logits: the baseline heatmap loss (registry name ``bce``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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
        normaliser: optional float32 scalar tensor replacing ``sum(m)`` (e.g. the count over all
            DDP ranks; no gradient; 0 divides by 1).

    Returns:
        FloatTensor[] (float32 scalar).
    """
    check_heatmap_inputs(logits, target, mask, loss="binary_cross_entropy")
    x = logits.float()
    m = expand_mask(mask, x)
    loss = F.binary_cross_entropy_with_logits(x, target.float(), reduction="none")  # [B, C, H, W]
    count = m.sum() if normaliser is None else normaliser.detach().to(device=x.device, dtype=torch.float32)
    return (loss * m).sum() / safe_denominator(count)


class BCEHeatmapLoss(nn.Module):
    """Module form of :func:`binary_cross_entropy` (no parameters)."""

    def forward(
        self, logits: Tensor, target: Tensor, mask: Tensor | None = None, normaliser: Tensor | None = None
    ) -> Tensor:
        """See :func:`binary_cross_entropy`; returns FloatTensor[]."""
        return binary_cross_entropy(logits, target, mask, normaliser)
