"""GHM for CenterNet heatmaps: CenterNet's positives, penalty reduction and normaliser, GHM weights.

Definition (``docs/loss_study.md``, "GHM-CenterNet"). With ``p = sigmoid(x)``, ``m`` the mask,
``pos = 1[y == 1] * m`` (the peaks), ``neg = 1[y < 1] * m`` and the binary gradient norm::

    g = |p - 1[y == 1]|          (detached; p for a negative, 1 - p for a positive)

every valid element (``m > 0``) gets the gradient-density weight ``w = N / (density[bin(g)] * n)``
of :mod:`centernet.losses.ghm_density` (``N`` valid elements, ``n`` non-empty bins, ``density`` from
the batch, an EMA, the previous epoch or batch-then-epoch), and::

    L = -[sum(w * log(p) * pos) + sum(w * (1 - y)^beta * log(1 - p) * neg)] / num_pos

with ``num_pos = sum(pos)`` (1 when there is none, as in CenterNet; under DDP the criterion passes
the all-reduced count). This is the penalty-reduced focal loss with the focal modulation
``(1 - p)^alpha`` / ``p^alpha`` replaced by ``w``; ``d L / d x = w * (p - 1) / num_pos`` at a
positive and ``w * (1 - y)^beta * p / num_pos`` at a negative.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from centernet.losses.base import POSITIVE_TARGET, count_positives
from centernet.losses.ghm_density import DensitySource, EmaInit, GradientDensityLoss
from centernet.losses.masking import check_heatmap_inputs, expand_mask, safe_denominator


class GHMCenterNet(GradientDensityLoss):
    """GHM weights in CenterNet's heatmap loss (registry name ``ghm_centernet``).

    Args:
        beta: penalty-reduction exponent on ``(1 - y)`` of the negatives (CenterNet: 4).
        bins, momentum, density, ema_init, switch_epoch, switch_tolerance, reduce_counts: the
            gradient-density options of :class:`centernet.losses.ghm_density.GradientDensityLoss`.
    """

    def __init__(
        self,
        beta: float = 4.0,
        bins: int = 10,
        momentum: float = 0.0,
        density: DensitySource | None = None,
        ema_init: EmaInit = "first_count",
        switch_epoch: int = 0,
        switch_tolerance: float = 0.01,
        reduce_counts: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__(
            bins=bins, momentum=momentum, density=density, ema_init=ema_init,
            switch_epoch=switch_epoch, switch_tolerance=switch_tolerance, reduce_counts=reduce_counts,
        )
        if isinstance(beta, bool) or not isinstance(beta, int | float) or beta < 0:
            raise ValueError(f"GHMCenterNet: beta must be a number >= 0, got {beta!r}")
        self.beta = float(beta)

    def normaliser(self, target: Tensor, mask: Tensor | None) -> Tensor:
        """The number of masked positives (``target == 1``)."""
        return count_positives(target, mask)

    def forward(
        self, logits: Tensor, target: Tensor, mask: Tensor | None = None, normaliser: Tensor | None = None
    ) -> Tensor:
        """Compute the loss (see the module docstring).

        Args:
            logits: FloatTensor[B, C, H, W] raw heatmap scores (computed in float32).
            target: FloatTensor[B, C, H, W] Gaussian targets in [0, 1], exactly 1 at object centres.
            mask: optional Tensor[B, C, H, W] or [B, 1, H, W]; non-zero = counts (in the histogram
                and the loss), 0 = ignored.
            normaliser: FloatTensor[] to divide by instead of this batch's ``num_pos``.

        Returns:
            FloatTensor[] (float32 scalar).
        """
        check_heatmap_inputs(logits, target, mask, loss="GHMCenterNet")
        x = logits.float()
        y = target.float()
        valid = expand_mask(mask, x) > 0  # [B, C, H, W] bool
        is_pos = y == POSITIVE_TARGET
        with torch.no_grad():
            grad_norm = (torch.sigmoid(x) - is_pos.float()).abs()
        weight = self.element_weights(grad_norm, valid)
        pos = (is_pos & valid).float()
        neg = ((y < POSITIVE_TARGET) & valid).float()
        pos_term = (F.logsigmoid(x) * weight * pos).sum()
        neg_term = (F.logsigmoid(-x) * weight * (1.0 - y).pow(self.beta) * neg).sum()
        num_pos = pos.sum() if normaliser is None else normaliser
        return -(pos_term + neg_term) / safe_denominator(num_pos)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, {super().extra_repr()}"
