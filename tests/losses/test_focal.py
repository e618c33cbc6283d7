"""Tests for centernet.losses.focal: penalty-reduced focal loss and RetinaNet focal loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision

from centernet.losses import (
    SigmoidFocalLoss,
    penalty_reduced_focal_loss,
    penalty_reduced_focal_loss_reference,
    sigmoid_focal_loss,
)

GOLDEN_RTOL = 1e-4


def _tiny() -> tuple[torch.Tensor, torch.Tensor]:
    """Logits with p = 0.5, 0.75, 0.25 and targets 1 (centre), 0.5 (Gaussian), 0 (background)."""
    logits = torch.tensor([0.0, math.log(3.0), -math.log(3.0)]).view(1, 1, 1, 3)
    target = torch.tensor([1.0, 0.5, 0.0]).view(1, 1, 1, 3)
    return logits, target


# ---------------------------------------------------------------- penalty-reduced focal loss


def test_penalty_reduced_focal_matches_original_golden(golden: dict[str, np.ndarray]) -> None:
    logits = torch.from_numpy(golden["f_logits"])
    target = torch.from_numpy(golden["f_target"])
    mask = torch.from_numpy(golden["f_mask"])
    nopos = torch.from_numpy(golden["f_target_nopos"])
    cases = [
        (penalty_reduced_focal_loss(logits, target), golden["f_loss_nomask"]),
        (penalty_reduced_focal_loss(logits, target, mask), golden["f_loss_mask"]),
        (penalty_reduced_focal_loss(logits, nopos), golden["f_loss_nopos"]),
    ]
    for got, expected in cases:
        assert got.dtype == torch.float32 and got.shape == ()
        assert got.item() == pytest.approx(float(expected), rel=GOLDEN_RTOL)


def test_penalty_reduced_focal_hand_computed() -> None:
    logits, target = _tiny()
    pos = math.log(0.5) * 0.5**2  # log p (1-p)^2 at the centre
    neg_gauss = math.log(0.25) * 0.75**2 * 0.5**4  # log(1-p) p^2 (1-y)^4
    neg_bg = math.log(0.75) * 0.25**2
    expected = -(pos + neg_gauss + neg_bg) / 1.0
    assert penalty_reduced_focal_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)
    # alpha/beta are honoured: alpha = 1, beta = 1
    expected_ab = -(math.log(0.5) * 0.5 + math.log(0.25) * 0.75 * 0.5 + math.log(0.75) * 0.25)
    got = penalty_reduced_focal_loss(logits, target, alpha=1.0, beta=1.0)
    assert got.item() == pytest.approx(expected_ab, rel=1e-6)


def test_penalty_reduced_focal_no_positive_is_negative_term_alone() -> None:
    logits, target = _tiny()
    target[..., 0] = 0.99
    neg = math.log(0.5) * 0.5**2 * 0.01**4 + math.log(0.25) * 0.75**2 * 0.5**4 + math.log(0.75) * 0.25**2
    assert penalty_reduced_focal_loss(logits, target).item() == pytest.approx(-neg, rel=1e-5)


def test_penalty_reduced_focal_mask_excludes_elements_and_broadcasts() -> None:
    logits, target = _tiny()
    mask = torch.tensor([1.0, 0.0, 1.0]).view(1, 1, 1, 3)
    expected = -(math.log(0.5) * 0.25 + math.log(0.75) * 0.25**2)
    assert penalty_reduced_focal_loss(logits, target, mask).item() == pytest.approx(expected, rel=1e-6)
    # a [B, 1, H, W] mask broadcasts over the classes exactly like the expanded mask
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, 5, generator=gen)
    target = torch.rand(2, 3, 5, 5, generator=gen) * 0.9
    target[0, 1, 2, 2] = target[1, 0, 4, 1] = 1.0
    mask1 = (torch.rand(2, 1, 5, 5, generator=gen) > 0.3).float()
    broadcast = penalty_reduced_focal_loss(logits, target, mask1)
    expanded = penalty_reduced_focal_loss(logits, target, mask1.expand(2, 3, 5, 5).clone())
    torch.testing.assert_close(broadcast, expanded)


def test_penalty_reduced_focal_masked_positive_switches_to_negative_term() -> None:
    logits, target = _tiny()
    mask = torch.tensor([0.0, 1.0, 1.0]).view(1, 1, 1, 3)  # the only positive is ignored
    expected = -(math.log(0.25) * 0.75**2 * 0.5**4 + math.log(0.75) * 0.25**2)
    assert penalty_reduced_focal_loss(logits, target, mask).item() == pytest.approx(expected, rel=1e-6)


def test_penalty_reduced_focal_empty_input_is_zero() -> None:
    empty = torch.zeros(0, 4, 8, 8)
    loss = penalty_reduced_focal_loss(empty, empty)
    assert loss.shape == () and loss.item() == 0.0


def test_penalty_reduced_focal_stable_and_fp32_for_half_inputs() -> None:
    logits = torch.tensor([100.0, -100.0, 100.0, -100.0]).view(1, 1, 2, 2)
    target = torch.tensor([1.0, 0.0, 0.0, 1.0]).view(1, 1, 2, 2)
    loss = penalty_reduced_focal_loss(logits, target)
    assert torch.isfinite(loss)
    logits.requires_grad_(True)
    penalty_reduced_focal_loss(logits, target).backward()
    assert torch.isfinite(logits.grad).all()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 4, 4, generator=gen)
    y = torch.rand(1, 2, 4, 4, generator=gen)
    y[0, 0, 1, 1] = 1.0
    half = penalty_reduced_focal_loss(x.bfloat16(), y.bfloat16())
    assert half.dtype == torch.float32
    ref = penalty_reduced_focal_loss(x.bfloat16().float(), y.bfloat16().float())
    torch.testing.assert_close(half, ref)


def test_penalty_reduced_focal_rejects_bad_shapes() -> None:
    x = torch.zeros(1, 2, 4, 4)
    with pytest.raises(ValueError, match="target shape"):
        penalty_reduced_focal_loss(x, torch.zeros(1, 2, 4, 5))
    with pytest.raises(ValueError, match="mask shape"):
        penalty_reduced_focal_loss(x, x, torch.ones(1, 3, 4, 4))


# ---------------------------------------------------------------- RetinaNet focal loss


def test_sigmoid_focal_hand_computed() -> None:
    logits, target = _tiny()  # target 0.5 is binarised to a negative
    expected = (
        -0.25 * 0.5**2 * math.log(0.5)  # positive, p_t = 0.5
        - 0.75 * 0.75**2 * math.log(0.25)  # negative with p = 0.75: p_t = 0.25
        - 0.75 * 0.25**2 * math.log(0.75)  # negative with p = 0.25: p_t = 0.75
    ) / 1.0
    assert sigmoid_focal_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)
    mask = torch.tensor([1.0, 0.0, 1.0]).view(1, 1, 1, 3)
    expected_masked = -0.25 * 0.25 * math.log(0.5) - 0.75 * 0.25**2 * math.log(0.75)
    assert sigmoid_focal_loss(logits, target, mask).item() == pytest.approx(expected_masked, rel=1e-6)


def test_sigmoid_focal_matches_torchvision_without_balancing() -> None:
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 6, 6, generator=gen) * 3
    target = (torch.rand(2, 3, 6, 6, generator=gen) > 0.9).float()
    num_pos = target.sum()
    assert num_pos > 0
    expected = torchvision.ops.sigmoid_focal_loss(logits, target, alpha=-1, gamma=2.0, reduction="sum")
    torch.testing.assert_close(sigmoid_focal_loss(logits, target, alpha=-1.0), expected / num_pos)
    expected_bal = torchvision.ops.sigmoid_focal_loss(logits, target, alpha=0.25, gamma=1.5, reduction="sum")
    got_bal = sigmoid_focal_loss(logits, target, alpha=0.25, gamma=1.5)
    torch.testing.assert_close(got_bal, expected_bal / num_pos)


def test_sigmoid_focal_no_positive_and_empty_are_finite() -> None:
    logits = torch.tensor([2.0, -1.0]).view(1, 1, 1, 2)
    target = torch.tensor([0.5, 0.0]).view(1, 1, 1, 2)
    p = torch.sigmoid(logits).flatten().tolist()
    expected = sum(-0.75 * q**2 * math.log(1 - q) for q in p)  # normalised by max(0, 1) = 1
    assert sigmoid_focal_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)
    empty = torch.zeros(0, 2, 4, 4)
    assert sigmoid_focal_loss(empty, empty).item() == 0.0


def test_sigmoid_focal_normaliser_replaces_the_positive_count() -> None:
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 6, 6, generator=gen) * 2
    target = (torch.rand(2, 3, 6, 6, generator=gen) > 0.9).float()
    mask = (torch.rand(2, 1, 6, 6, generator=gen) > 0.3).float()
    num_pos = (target * mask).sum()
    assert num_pos > 1
    unnormalised_sum = sigmoid_focal_loss(logits, target, mask) * num_pos
    got = sigmoid_focal_loss(logits, target, mask, normaliser=torch.tensor(4.0))
    assert got.item() == pytest.approx(unnormalised_sum.item() / 4.0, rel=1e-6)
    module = SigmoidFocalLoss()
    assert module(logits, target, mask, torch.tensor(4.0)).item() == pytest.approx(got.item(), rel=1e-7)
    zero = sigmoid_focal_loss(logits, target, mask, normaliser=torch.tensor(0.0))  # divides by 1
    assert zero.item() == pytest.approx(unnormalised_sum.item(), rel=1e-6)


def test_reference_normaliser_and_float64() -> None:
    logits, target = _tiny()
    expected_sum = -(math.log(0.5) * 0.5**2 + math.log(0.25) * 0.75**2 * 0.5**4 + math.log(0.75) * 0.25**2)
    got = penalty_reduced_focal_loss_reference(logits, target, normaliser=torch.tensor(4.0))
    assert got.dtype == torch.float32 and got.item() == pytest.approx(expected_sum / 4.0, rel=1e-6)
    logits64 = torch.tensor([0.0, math.log(3.0), -math.log(3.0)], dtype=torch.float64).view(1, 1, 1, 3)
    got64 = penalty_reduced_focal_loss_reference(logits64, target.double())
    assert got64.dtype == torch.float64 and got64.item() == pytest.approx(expected_sum, rel=1e-12)
