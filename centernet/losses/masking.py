"""Shape checks and mask broadcasting shared by the dense heatmap losses."""

from __future__ import annotations

import torch
from torch import Tensor

HEATMAP_NDIM = 4  # [B, C, H, W]


def check_heatmap_inputs(logits: Tensor, target: Tensor, mask: Tensor | None, *, loss: str) -> None:
    """Validate the shapes of a dense heatmap loss call (metadata only: no host sync).

    Args:
        logits: FloatTensor[B, C, H, W] raw scores.
        target: FloatTensor[B, C, H, W] targets in [0, 1].
        mask: optional Tensor[B, C, H, W] or [B, 1, H, W]; 1 = counts, 0 = ignored.
        loss: name of the calling loss, used in error messages.

    Raises:
        ValueError: naming the argument whose shape is wrong and the expected shape.
    """
    if logits.dim() != HEATMAP_NDIM:
        raise ValueError(f"{loss}: logits must be [B, C, H, W], got shape {tuple(logits.shape)}")
    if target.shape != logits.shape:
        raise ValueError(f"{loss}: target shape {tuple(target.shape)} must equal logits shape {tuple(logits.shape)}")
    if mask is None:
        return
    batch, channels, height, width = logits.shape
    if (
        mask.dim() != HEATMAP_NDIM
        or mask.shape[0] != batch
        or mask.shape[2:] != logits.shape[2:]
        or (mask.shape[1] not in (1, channels))
    ):
        raise ValueError(
            f"{loss}: mask shape {tuple(mask.shape)} must be [{batch}, {channels}, {height}, {width}] "
            f"or [{batch}, 1, {height}, {width}]"
        )


def expand_mask(mask: Tensor | None, like: Tensor) -> Tensor:
    """Return the mask as float32 broadcast to ``like``'s shape (all ones when ``mask`` is None).

    Args:
        mask: optional Tensor[B, C, H, W] or [B, 1, H, W] (any dtype; 1 = counts, 0 = ignored).
        like: Tensor[B, C, H, W] whose shape and device the result takes.

    Returns:
        FloatTensor[B, C, H, W] (an expanded view when the mask has one channel).
    """
    if mask is None:
        return torch.ones_like(like, dtype=torch.float32)
    return mask.to(device=like.device, dtype=torch.float32).expand_as(like)


def safe_denominator(count: Tensor) -> Tensor:
    """Return ``count`` where it is positive, else 1, without a host sync.

    Args:
        count: FloatTensor[] (a number of positives or of valid elements).

    Returns:
        FloatTensor[] usable as a divisor: a zero count leaves the numerator unchanged.
    """
    return torch.where(count > 0, count, torch.ones_like(count))
