"""GHM-C: the gradient harmonizing classification loss (Li, Liu, Wang, AAAI 2019) on heatmap logits.

Every element's gradient norm is ``g = |sigmoid(x) - y|`` (detached); the per-element weight ``w``
comes from the gradient density of the valid elements (bins, ``batch | ema | epoch |
batch_then_epoch`` density, ``ema_init``: :mod:`centernet.losses.ghm_density`, ``docs/loss_study.md``)
and::

    L = sum(w * BCE_with_logits(x, y)) / N_valid

so that ``d L / d x = (p - y) * w / N_valid``. Soft (Gaussian) targets ``y`` are allowed. Under DDP
the criterion passes the all-reduced number of valid elements as the normaliser.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from centernet.config.schema import GHM_DENSITIES
from centernet.losses.base import count_valid
from centernet.losses.ghm_density import LAST_EDGE_MARGIN, DensitySource, GradientDensityLoss
from centernet.losses.masking import check_heatmap_inputs, expand_mask, safe_denominator

DENSITY_SOURCES: tuple[str, ...] = GHM_DENSITIES

__all__ = ["DENSITY_SOURCES", "GHMC", "LAST_EDGE_MARGIN", "DensitySource"]


class GHMC(GradientDensityLoss):
    """Gradient harmonizing classification loss on heatmap logits (registry name ``ghm_c``).

    Takes the arguments of :class:`centernet.losses.ghm_density.GradientDensityLoss` (``bins``,
    ``momentum``, ``density``, ``ema_init``, ``switch_epoch``, ``switch_tolerance``,
    ``reduce_counts``) and has its buffers.
    """

    def normaliser(self, target: Tensor, mask: Tensor | None) -> Tensor:
        """The number of masked-in elements."""
        return count_valid(target, mask)

    def forward(
        self, logits: Tensor, target: Tensor, mask: Tensor | None = None, normaliser: Tensor | None = None
    ) -> Tensor:
        """Compute the GHM-C loss.

        Args:
            logits: FloatTensor[B, C, H, W] raw heatmap scores (computed in float32).
            target: FloatTensor[B, C, H, W] targets in [0, 1] (binary or soft Gaussian).
            mask: optional Tensor[B, C, H, W] or [B, 1, H, W]; non-zero = counts (in the histogram
                and the loss), 0 = ignored.
            normaliser: FloatTensor[] to divide by instead of the number of valid elements.

        Returns:
            FloatTensor[] (float32 scalar); 0 when no element is valid.
        """
        check_heatmap_inputs(logits, target, mask, loss="GHMC")
        x = logits.float()
        y = target.float()
        valid = expand_mask(mask, x) > 0  # [B, C, H, W] bool
        with torch.no_grad():
            grad_norm = (torch.sigmoid(x) - y).abs()
        weight = self.element_weights(grad_norm, valid)
        bce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
        count = valid.sum().float() if normaliser is None else normaliser
        return (weight * bce).sum() / safe_denominator(count)
