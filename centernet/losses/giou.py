"""GIoU regression of dense ``ltrb`` box maps against TTFNet box targets (Liu et al., AAAI 2020).

Every output cell ``(x, y)`` with a positive box weight predicts the distances from its centre
``(x * d, y * d)`` (input pixels, ``d`` the down ratio, as TTFNet) to the four sides of its box; the
loss is the GIoU loss of the decoded box against the cell's target box, weighted per cell. The GIoU
itself is torchvision's ``generalized_box_iou_loss``, on boxes whose ``x2, y2`` are moved one pixel out
(:data:`PIXEL_OFFSET`): that is TTFNet's own GIoU, which counts pixels inclusively (widths ``x2 - x1 + 1``,
intersections ``min(x2) - max(x1) + 1``, the enclosing box alike). Besides matching TTFNet, the pixel
matters for training: at the start the ltrb head predicts boxes of almost zero size, and with
continuous coordinates a zero-size box has zero intersection with zero gradient in every direction (a
saddle the GIoU loss stays at, 1.0); with the pixel every prediction is at least 1 x 1 pixel and the
gradient grows it.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss

NORMALISER_EPS = 1e-4  # added to sum(box_weight), as TTFNet's avg_factor
PIXEL_OFFSET = 1.0  # TTFNet's inclusive pixels: x2, y2 of both boxes move this far out before the GIoU
LTRB_CHANNELS = 4  # (left, top, right, bottom)
# Target of the cells without a box: any valid box keeps the (zero-weighted) GIoU finite there.
_PLACEHOLDER_BOX = (0.0, 0.0, 1.0, 1.0)


def cell_centres(height: int, width: int, down_ratio: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Input-pixel centres of the output cells: ``x * d`` FloatTensor[1, W] and ``y * d`` FloatTensor[H, 1]."""
    xs = torch.arange(width, dtype=torch.float32, device=device) * down_ratio
    ys = torch.arange(height, dtype=torch.float32, device=device) * down_ratio
    return xs.view(1, width), ys.view(height, 1)


def ltrb_to_boxes(ltrb: Tensor, *, down_ratio: int) -> Tensor:
    """Decode a dense ``ltrb`` map into input-pixel boxes, one per cell.

    Args:
        ltrb: FloatTensor[B, 4, H, W] non-negative distances ``(l, t, r, b)`` in input pixels.
        down_ratio: input pixels per output cell ``d``.

    Returns:
        FloatTensor[B, 4, H, W] ``[x*d - l, y*d - t, x*d + r, y*d + b]`` (dtype of ``ltrb``).
    """
    xs, ys = cell_centres(ltrb.shape[-2], ltrb.shape[-1], down_ratio, ltrb.device)
    left, top, right, bottom = ltrb.unbind(1)
    return torch.stack((xs - left, ys - top, xs + right, ys + bottom), dim=1)


def _check_maps(pred_ltrb: Tensor, box_target: Tensor, box_weight: Tensor) -> None:
    if pred_ltrb.dim() != 4 or pred_ltrb.shape[1] != LTRB_CHANNELS:
        raise ValueError(f"ltrb_giou_loss: pred_ltrb must be [B, 4, H, W], got {tuple(pred_ltrb.shape)}")
    if box_target.shape != pred_ltrb.shape:
        raise ValueError(
            f"ltrb_giou_loss: box_target shape {tuple(box_target.shape)} must equal pred_ltrb's "
            f"{tuple(pred_ltrb.shape)}"
        )
    batch, _, height, width = pred_ltrb.shape
    if tuple(box_weight.shape) != (batch, 1, height, width):
        raise ValueError(
            f"ltrb_giou_loss: box_weight must be {(batch, 1, height, width)}, got {tuple(box_weight.shape)}"
        )


def ltrb_giou_loss(
    pred_ltrb: Tensor,
    box_target: Tensor,
    box_weight: Tensor,
    *,
    down_ratio: int,
    normaliser: Tensor | float | None = None,
) -> Tensor:
    """Weighted GIoU loss of the boxes decoded from ``pred_ltrb`` at every cell with a positive weight.

    ``L = sum_cells(w * (1 - GIoU(pred_box, target_box))) / N`` with ``N = sum(w) + 1e-4`` (TTFNet's
    normalisation) unless ``normaliser`` is given; the GIoU counts pixels inclusively, as TTFNet's (module
    docstring): a box ``[x1, y1, x2, y2]`` is ``x2 - x1 + 1`` wide. Computed densely in float32 (no host sync); cells
    with weight 0 contribute neither value nor gradient.

    Args:
        pred_ltrb: FloatTensor[B, 4, H, W] predicted non-negative distances in input pixels (any float
            dtype).
        box_target: FloatTensor[B, 4, H, W] input-pixel target boxes ``[x1, y1, x2, y2]`` (any value
            where the weight is 0), from :func:`centernet.targets.render_ttf_targets`.
        box_weight: FloatTensor[B, 1, H, W] non-negative per-cell weights.
        down_ratio: input pixels per output cell.
        normaliser: what the weighted sum is divided by (e.g. a weight sum over all ranks); must be > 0.

    Returns:
        FloatTensor[] float32 scalar; 0 when no weight is positive.
    """
    _check_maps(pred_ltrb, box_target, box_weight)
    if isinstance(normaliser, int | float) and normaliser <= 0:
        raise ValueError(f"ltrb_giou_loss: normaliser must be > 0, got {normaliser}")
    weight = box_weight.float()
    pred_boxes = ltrb_to_boxes(pred_ltrb.float(), down_ratio=down_ratio)
    placeholder = torch.tensor(_PLACEHOLDER_BOX, device=weight.device).view(1, LTRB_CHANNELS, 1, 1)
    target = torch.where(weight > 0, box_target.float(), placeholder)
    inclusive = torch.tensor((0.0, 0.0, PIXEL_OFFSET, PIXEL_OFFSET), device=weight.device).view(1, LTRB_CHANNELS)
    per_cell = generalized_box_iou_loss(
        pred_boxes.permute(0, 2, 3, 1).reshape(-1, LTRB_CHANNELS) + inclusive,
        target.permute(0, 2, 3, 1).reshape(-1, LTRB_CHANNELS) + inclusive,
        reduction="none",
    )  # [B*H*W]
    total = (per_cell * weight.permute(0, 2, 3, 1).reshape(-1)).sum()
    denominator = weight.sum() + NORMALISER_EPS if normaliser is None else normaliser
    return total / denominator
