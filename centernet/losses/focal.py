"""Focal losses on heatmap logits: CenterNet's penalty-reduced focal loss and RetinaNet's focal loss.

Both compute in float32 (whatever the input dtype, e.g. under AMP) and take ``log p`` and
``log(1 - p)`` from ``F.logsigmoid`` so that large logits never produce ``log(0)``. Both take an
optional ``normaliser`` (a float32 scalar tensor, e.g. the positives counted over all DDP ranks)
that replaces the locally counted positives; a zero count or normaliser divides by 1.

:func:`penalty_reduced_focal_loss` runs the fused autograd function of
:mod:`centernet.losses.fused_focal`; :func:`penalty_reduced_focal_loss_reference` is the plain
formula it is tested against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from centernet.losses.base import POSITIVE_TARGET, HeatmapLoss
from centernet.losses.fused_focal import BACKENDS, fused_penalty_reduced_focal_loss
from centernet.losses.masking import check_heatmap_inputs, expand_mask, safe_denominator

__all__ = [
    "BACKENDS",
    "POSITIVE_TARGET",
    "PenaltyReducedFocalLoss",
    "SigmoidFocalLoss",
    "penalty_reduced_focal_loss",
    "penalty_reduced_focal_loss_reference",
    "sigmoid_focal_loss",
]


def _divisor(count: Tensor, normaliser: Tensor | None) -> Tensor:
    """``normaliser`` (detached, on ``count``'s device) or ``count``, with 0 replaced by 1."""
    if normaliser is not None:
        count = normaliser.detach().to(device=count.device, dtype=torch.float32)
    return safe_denominator(count)


def penalty_reduced_focal_loss(
    logits: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    *,
    alpha: float = 2.0,
    beta: float = 4.0,
    normaliser: Tensor | None = None,
    backend: str = "auto",
) -> Tensor:
    """CornerNet/CenterNet penalty-reduced focal loss on heatmap logits (fused forward and backward).

    Equal to :func:`penalty_reduced_focal_loss_reference` (same arguments, same result and gradient
    to float32 rounding) but computed by one autograd function that keeps only its inputs for the
    backward pass and recomputes the terms there (see :mod:`centernet.losses.fused_focal`).

    Args:
        logits: FloatTensor[B, C, H, W] raw heatmap scores (any float dtype; computed in float32).
        target: FloatTensor[B, C, H, W] Gaussian targets in [0, 1], exactly 1 at object centres.
        mask: optional Tensor[B, C, H, W] or [B, 1, H, W] (broadcast over classes); 1 = counts,
            0 = ignored. None counts every element.
        alpha: focusing exponent on ``(1 - p)`` (positives) and ``p`` (negatives).
        beta: penalty-reduction exponent on ``(1 - target)`` around centres.
        normaliser: optional float32 scalar tensor dividing the sum instead of the number of masked
            positives (e.g. the count all-reduced over DDP ranks; no gradient flows into it; 0 divides by 1).
        backend: ``auto`` | ``eager`` | ``compiled`` (``auto``: compiled on CUDA, eager elsewhere).

    Returns:
        FloatTensor[] (float32 scalar).
    """
    check_heatmap_inputs(logits, target, mask, loss="penalty_reduced_focal_loss")
    return fused_penalty_reduced_focal_loss(logits, target, mask, normaliser, alpha=alpha, beta=beta, backend=backend)


def penalty_reduced_focal_loss_reference(
    logits: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    *,
    alpha: float = 2.0,
    beta: float = 4.0,
    normaliser: Tensor | None = None,
) -> Tensor:
    """CornerNet/CenterNet penalty-reduced focal loss on heatmap logits, as a plain formula (autograd).

    With ``p = sigmoid(logits)``, ``pos = (target == 1) * mask`` and ``neg = (target < 1) * mask``::

        L = -[sum(log(p) (1 - p)^alpha pos) + sum(log(1 - p) p^alpha (1 - target)^beta neg)] / num_pos

    where ``num_pos = sum(pos)`` (or ``normaliser`` when given); when the divisor is 0 the loss is
    the negative term alone (as in the original ``_neg_loss``). The zero case is handled with
    ``torch.where`` (no host sync). Equal to the original applied to
    ``clamp(sigmoid(logits), 1e-4, 1 - 1e-4)`` wherever that clamp is inactive.

    Args:
        logits: FloatTensor[B, C, H, W] raw heatmap scores (any float dtype; computed in float32).
        target: FloatTensor[B, C, H, W] Gaussian targets in [0, 1], exactly 1 at object centres.
        mask: optional Tensor[B, C, H, W] or [B, 1, H, W] (broadcast over classes); 1 = counts,
            0 = ignored. None counts every element.
        alpha: focusing exponent on ``(1 - p)`` (positives) and ``p`` (negatives).
        beta: penalty-reduction exponent on ``(1 - target)`` around centres.
        normaliser: optional float32 scalar tensor replacing ``num_pos`` (no gradient; 0 divides by 1).

    Returns:
        FloatTensor[] (float32 scalar; float64 for float64 logits, to check other implementations against).
    """
    check_heatmap_inputs(logits, target, mask, loss="penalty_reduced_focal_loss")
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    x = logits.to(dtype)
    y = target.to(dtype)
    m = expand_mask(mask, x).to(dtype)
    log_p = F.logsigmoid(x)
    log_1mp = F.logsigmoid(-x)
    p = torch.sigmoid(x)
    one_minus_p = torch.sigmoid(-x)
    pos = (y == POSITIVE_TARGET).to(dtype) * m  # [B, C, H, W]
    neg = (y < POSITIVE_TARGET).to(dtype) * m
    pos_term = (log_p * one_minus_p.pow(alpha) * pos).sum()
    neg_term = (log_1mp * p.pow(alpha) * (1.0 - y).pow(beta) * neg).sum()
    num_pos = pos.sum()
    # With no positives pos_term is 0 and the divisor 1: the loss is -neg_term, as in the original.
    return -(pos_term + neg_term) / _divisor(num_pos, normaliser).to(dtype)


def sigmoid_focal_loss(
    logits: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    *,
    alpha: float = 0.25,
    gamma: float = 2.0,
    normaliser: Tensor | None = None,
) -> Tensor:
    """RetinaNet focal loss ``-alpha_t (1 - p_t)^gamma log(p_t)`` on heatmap logits.

    The Gaussian heatmap is binarised: only elements with ``target == 1`` are positives, every other
    element is a negative. The masked sum is normalised by ``max(num_pos, 1)``, ``num_pos`` being
    the number of masked positives (or ``normaliser`` when given), so an image without objects
    gives a finite loss.

    Args:
        logits: FloatTensor[B, C, H, W] raw heatmap scores (any float dtype; computed in float32).
        target: FloatTensor[B, C, H, W] heatmap targets; 1 marks a positive.
        mask: optional Tensor[B, C, H, W] or [B, 1, H, W]; 1 = counts, 0 = ignored.
        alpha: weight of positives in [0, 1] (negatives get ``1 - alpha``); negative = no balancing.
        gamma: focusing exponent.
        normaliser: FloatTensor[] to divide by instead of this batch's ``num_pos`` (clamped to >= 1).

    Returns:
        FloatTensor[] (float32 scalar).
    """
    check_heatmap_inputs(logits, target, mask, loss="sigmoid_focal_loss")
    x = logits.float()
    m = expand_mask(mask, x)
    y = (target == POSITIVE_TARGET).float()  # [B, C, H, W] binary
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")  # -log(p_t)
    one_minus_pt = torch.where(y > 0, torch.sigmoid(-x), torch.sigmoid(x))
    loss = ce * one_minus_pt.pow(gamma)
    if alpha >= 0:
        loss = loss * (alpha * y + (1.0 - alpha) * (1.0 - y))
    num_pos = (y * m).sum() if normaliser is None else normaliser
    return (loss * m).sum() / num_pos.clamp_min(1.0)


class PenaltyReducedFocalLoss(HeatmapLoss):
    """Module form of :func:`penalty_reduced_focal_loss` (registry name ``penalty_reduced_focal``).

    Args:
        alpha: focusing exponent.
        beta: penalty-reduction exponent.
        backend: ``auto`` | ``eager`` | ``compiled`` (see :mod:`centernet.losses.fused_focal`).
    """

    def __init__(self, alpha: float = 2.0, beta: float = 4.0, backend: str = "auto") -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"PenaltyReducedFocalLoss: backend must be one of {list(BACKENDS)}, got {backend!r}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.backend = backend

    def forward(
        self, logits: Tensor, target: Tensor, mask: Tensor | None = None, normaliser: Tensor | None = None
    ) -> Tensor:
        """See :func:`penalty_reduced_focal_loss`; returns FloatTensor[]."""
        return penalty_reduced_focal_loss(
            logits, target, mask, alpha=self.alpha, beta=self.beta, normaliser=normaliser, backend=self.backend
        )

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, backend={self.backend!r}"


class SigmoidFocalLoss(HeatmapLoss):
    """Module form of :func:`sigmoid_focal_loss` (registry name ``focal``).

    Args:
        alpha: positive/negative balance (negative disables it).
        gamma: focusing exponent.
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0) -> None:
        super().__init__()
        self.alpha = float(alpha)
        self.gamma = float(gamma)

    def forward(
        self, logits: Tensor, target: Tensor, mask: Tensor | None = None, normaliser: Tensor | None = None
    ) -> Tensor:
        """See :func:`sigmoid_focal_loss`; returns FloatTensor[]."""
        return sigmoid_focal_loss(logits, target, mask, alpha=self.alpha, gamma=self.gamma, normaliser=normaliser)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, gamma={self.gamma}"
