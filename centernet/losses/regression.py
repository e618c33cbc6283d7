"""L1 regression of the size and offset maps at the object centres (CenterNet ``RegL1Loss``)."""

from __future__ import annotations

from torch import Tensor

NORMALISER_EPS = 1e-4  # added to the number of masked coordinates, as in the original
MAP_NDIM = 4  # [B, D, H, W]


def gather_at_index(feature_map: Tensor, index: Tensor) -> Tensor:
    """Read a dense map at flattened spatial positions.

    Args:
        feature_map: Tensor[B, D, H, W].
        index: LongTensor[B, M], positions ``y * W + x`` in ``[0, H * W)``.

    Returns:
        Tensor[B, M, D] (same dtype as ``feature_map``).
    """
    batch, channels = feature_map.shape[:2]
    flat = feature_map.reshape(batch, channels, -1)  # [B, D, H*W]
    gathered = flat.gather(2, index.long().unsqueeze(1).expand(batch, channels, index.shape[1]))  # [B, D, M]
    return gathered.permute(0, 2, 1)


def reg_l1_loss(
    pred_map: Tensor, target: Tensor, index: Tensor, mask: Tensor, normaliser: Tensor | None = None
) -> Tensor:
    """Masked L1 loss between a regression map read at the object centres and its targets.

    Reproduces the original ``RegL1Loss`` exactly::

        m = mask expanded to [B, M, D]
        L = sum(|pred * m - target * m|) / (sum(m) + 1e-4)

    i.e. ``sum(|pred - target| * mask) / (D * num_obj + 1e-4)`` with ``num_obj = sum(mask)``
    (``D = 2`` for size and offset: the loss is per coordinate). Computed in float32. Slots with
    mask 0 are read at position 0, so their (padding) index may hold any value.

    Args:
        pred_map: FloatTensor[B, D, H, W] predicted map (e.g. size or offset, D = 2).
        target: FloatTensor[B, M, D] targets per object slot.
        index: LongTensor[B, M] flattened centre positions ``y * W + x``.
        mask: Tensor[B, M], 1 for real objects and 0 for padding.
        normaliser: FloatTensor[] to divide by instead of ``sum(m) + 1e-4`` (e.g. the count
            all-reduced over DDP ranks, see :func:`regression_normaliser`).

    Returns:
        FloatTensor[] (float32 scalar); 0 when no slot is masked in.

    Raises:
        ValueError: when the shapes of the arguments disagree.
    """
    if pred_map.dim() != MAP_NDIM:
        raise ValueError(f"reg_l1_loss: pred_map must be [B, D, H, W], got {tuple(pred_map.shape)}")
    batch, channels = pred_map.shape[:2]
    if index.dim() != 2 or index.shape[0] != batch:
        raise ValueError(f"reg_l1_loss: index must be [{batch}, M], got {tuple(index.shape)}")
    slots = index.shape[1]
    if mask.shape != index.shape:
        raise ValueError(f"reg_l1_loss: mask shape {tuple(mask.shape)} must equal index shape ({batch}, {slots})")
    if target.shape != (batch, slots, channels):
        raise ValueError(f"reg_l1_loss: target shape {tuple(target.shape)} must be ({batch}, {slots}, {channels})")
    valid = mask > 0
    safe_index = index.long().masked_fill(~valid, 0)
    pred = gather_at_index(pred_map.float(), safe_index)  # [B, M, D]
    m = mask.float().unsqueeze(2).expand_as(pred)  # [B, M, D]
    loss = (pred * m - target.float() * m).abs().sum()
    return loss / (m.sum() + NORMALISER_EPS if normaliser is None else normaliser)


def regression_count(mask: Tensor, dims: int) -> Tensor:
    """Masked object coordinates ``D * sum(mask)`` of a batch (what :func:`reg_l1_loss` counts), float32."""
    return mask.float().sum() * dims
