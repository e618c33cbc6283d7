"""Tests for centernet.losses.giou: dense ltrb decoding and the weighted GIoU loss."""

from __future__ import annotations

import pytest
import torch

from centernet.losses import ltrb_giou_loss, ltrb_to_boxes
from centernet.targets import render_ttf_targets

EPS = 1e-4  # TTFNet's avg_factor epsilon
DOWN = 4


def perfect_ltrb(box_target: torch.Tensor, down_ratio: int) -> torch.Tensor:
    """The distances from each cell centre (x * d, y * d) to the sides of its target box (any sign)."""
    _, _, height, width = box_target.shape
    xs = (torch.arange(width, dtype=torch.float32) * down_ratio).view(1, width)
    ys = (torch.arange(height, dtype=torch.float32) * down_ratio).view(height, 1)
    x1, y1, x2, y2 = box_target.unbind(1)
    return torch.stack((xs - x1, ys - y1, x2 - xs, y2 - ys), dim=1)


def _rendered(boxes: list[list[float]]) -> dict[str, torch.Tensor]:
    m = len(boxes)
    return render_ttf_targets(
        torch.tensor([boxes]), torch.zeros(1, m, dtype=torch.long), torch.ones(1, m, dtype=torch.bool),
        num_classes=1, output_size=(16, 16), down_ratio=DOWN,
    )


def test_ltrb_to_boxes_uses_the_cell_corner_as_centre():
    ltrb = torch.zeros(1, 4, 2, 3)
    ltrb[0, :, 1, 2] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    boxes = ltrb_to_boxes(ltrb, down_ratio=DOWN)
    assert boxes[0, :, 1, 2].tolist() == [8.0 - 1, 4.0 - 2, 8.0 + 3, 4.0 + 4]  # centre (2 * 4, 1 * 4)
    assert boxes[0, :, 0, 1].tolist() == [4.0, 0.0, 4.0, 0.0]


def test_perfect_predictions_give_zero_loss():
    targets = _rendered([[4.0, 4.0, 60.0, 60.0], [36.0, 36.0, 52.0, 52.0], [2.0, 30.0, 30.0, 62.0]])
    ltrb = perfect_ltrb(targets["box_target"], DOWN)
    positive = targets["box_weight"] > 0
    assert int(positive.sum()) > 50 and (ltrb[positive.expand_as(ltrb)] >= 0).all()
    loss = ltrb_giou_loss(ltrb.clamp_min(0), targets["box_target"], targets["box_weight"], down_ratio=DOWN)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def _three_cells() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 1 x 3 grid: a half-overlapping box (weight 2), an exact box (weight 1), an unweighted cell."""
    pred = torch.tensor([[0.0, 0.0, 4.0, 4.0], [4.0, 0.0, 0.0, 4.0], [0.0, 0.0, 0.0, 0.0]]).T.reshape(1, 4, 1, 3)
    target = torch.tensor([[2.0, 2.0, 6.0, 6.0], [0.0, 0.0, 4.0, 4.0], [-1.0, -1.0, -1.0, -1.0]]).T.reshape(1, 4, 1, 3)
    weight = torch.tensor([2.0, 1.0, 0.0]).reshape(1, 1, 1, 3)
    return pred, target, weight


def ttfnet_giou(pred: list[float], target: list[float]) -> float:
    """TTFNet's GIoU, written out with its inclusive pixels (every width and height + 1)."""
    area = lambda b: (b[2] - b[0] + 1) * (b[3] - b[1] + 1)  # noqa: E731
    iw = max(min(pred[2], target[2]) - max(pred[0], target[0]) + 1, 0.0)
    ih = max(min(pred[3], target[3]) - max(pred[1], target[1]) + 1, 0.0)
    union = area(pred) + area(target) - iw * ih
    enclosing = (max(pred[2], target[2]) - min(pred[0], target[0]) + 1) * (
        max(pred[3], target[3]) - min(pred[1], target[1]) + 1)
    return iw * ih / union - (enclosing - union) / enclosing


def test_hand_computed_giou():
    pred, target, weight = _three_cells()
    # Cell 0: box [0, 0, 4, 4] vs [2, 2, 6, 6], inclusive pixels: 5 x 5 boxes, intersection 3 x 3 = 9,
    # union 25 + 25 - 9 = 41, enclosing box 7 x 7 = 49: GIoU = 9/41 - (49 - 41)/49; cell 1 decodes to
    # [4 - 4, 0, 4 + 0, 4] = its target: loss 0.
    giou = 9 / 41 - 8 / 49
    assert giou == pytest.approx(ttfnet_giou([0, 0, 4, 4], [2, 2, 6, 6]))
    expected = 2 * (1 - giou) / (3 + EPS)
    assert ltrb_giou_loss(pred, target, weight, down_ratio=DOWN).item() == pytest.approx(expected, rel=1e-6)
    given = ltrb_giou_loss(pred, target, weight, down_ratio=DOWN, normaliser=torch.tensor(2.0))
    assert given.item() == pytest.approx(2 * (1 - giou) / 2, rel=1e-6)


def test_a_zero_size_prediction_still_gets_a_gradient():
    """The ltrb head starts near zero: a zero-size box must not be a saddle of the loss (with continuous
    coordinates its intersection and every gradient are 0 and the loss stays at 1)."""
    ltrb = torch.zeros(1, 4, 1, 1, requires_grad=True)  # the box is the point (0, 0)
    target = torch.tensor([-10.0, -6.0, 12.0, 8.0]).view(1, 4, 1, 1)
    loss = ltrb_giou_loss(ltrb, target, torch.ones(1, 1, 1, 1), down_ratio=DOWN)
    assert loss.item() == pytest.approx((1 - ttfnet_giou([0, 0, 0, 0], [-10, -6, 12, 8])) / (1 + EPS), rel=1e-6)
    loss.backward()
    assert ltrb.grad is not None and (ltrb.grad < 0).all()  # every side grows towards the target's


def test_gradients_are_finite_and_zero_where_unweighted():
    targets = _rendered([[4.0, 4.0, 60.0, 60.0], [36.0, 36.0, 52.0, 52.0]])
    raw = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0)).mul(8).requires_grad_()
    pred = torch.relu(raw)  # about half the cells predict degenerate (zero-area) boxes
    loss = ltrb_giou_loss(pred, targets["box_target"], targets["box_weight"], down_ratio=DOWN)
    loss.backward()
    assert raw.grad is not None and torch.isfinite(raw.grad).all() and torch.isfinite(loss)
    unweighted = (targets["box_weight"] == 0).expand_as(raw.grad)
    assert (raw.grad[unweighted] == 0).all() and raw.grad.abs().sum() > 0


def test_no_positive_cell_gives_zero_with_zero_gradient():
    pred = torch.rand(2, 4, 3, 3, requires_grad=True)
    loss = ltrb_giou_loss(pred, torch.full((2, 4, 3, 3), -1.0), torch.zeros(2, 1, 3, 3), down_ratio=DOWN)
    loss.backward()
    assert loss.item() == 0.0 and pred.grad is not None and (pred.grad == 0).all()


def test_low_precision_input_is_computed_in_float32():
    pred, target, weight = _three_cells()
    loss = ltrb_giou_loss(pred.bfloat16(), target, weight, down_ratio=DOWN)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(ltrb_giou_loss(pred, target, weight, down_ratio=DOWN).item(), rel=1e-6)


def test_shape_and_normaliser_errors():
    pred, target, weight = _three_cells()
    with pytest.raises(ValueError, match=r"ltrb_giou_loss: pred_ltrb must be \[B, 4, H, W\], got \(1, 2, 1, 3\)"):
        ltrb_giou_loss(pred[:, :2], target, weight, down_ratio=DOWN)
    with pytest.raises(ValueError, match=r"ltrb_giou_loss: box_target shape \(1, 4, 1, 2\) must equal"):
        ltrb_giou_loss(pred, target[..., :2], weight, down_ratio=DOWN)
    with pytest.raises(ValueError, match=r"ltrb_giou_loss: box_weight must be \(1, 1, 1, 3\), got \(1, 3\)"):
        ltrb_giou_loss(pred, target, weight[:, 0, 0], down_ratio=DOWN)
    with pytest.raises(ValueError, match=r"ltrb_giou_loss: normaliser must be > 0, got 0"):
        ltrb_giou_loss(pred, target, weight, down_ratio=DOWN, normaliser=0)
