"""Tests for centernet.losses.bce.binary_cross_entropy (the baseline heatmap loss)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from centernet.losses import BCEHeatmapLoss, binary_cross_entropy


def test_hand_computed_with_soft_target_and_mask() -> None:
    logits = torch.tensor([0.0, math.log(3.0), 5.0]).view(1, 1, 1, 3)  # p = 0.5, 0.75, ...
    target = torch.tensor([1.0, 0.5, 0.0]).view(1, 1, 1, 3)
    mask = torch.tensor([1.0, 1.0, 0.0]).view(1, 1, 1, 3)
    bce_1 = -(0.5 * math.log(0.75) + 0.5 * math.log(0.25))
    expected = (math.log(2.0) + bce_1) / 2
    assert binary_cross_entropy(logits, target, mask).item() == pytest.approx(expected, rel=1e-6)


def test_unmasked_equals_torch_mean_and_broadcast_mask() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, generator=gen)
    target = torch.rand(2, 3, 4, 4, generator=gen)
    expected = F.binary_cross_entropy_with_logits(logits, target)
    assert binary_cross_entropy(logits.bfloat16(), target.bfloat16()).dtype == torch.float32
    torch.testing.assert_close(binary_cross_entropy(logits, target), expected)
    mask = (torch.rand(2, 1, 4, 4, generator=gen) > 0.5).float()
    full = mask.expand(2, 3, 4, 4)
    manual = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * full).sum() / full.sum()
    torch.testing.assert_close(binary_cross_entropy(logits, target, mask), manual)


def test_empty_and_all_masked_are_zero() -> None:
    empty = torch.zeros(0, 2, 3, 3)
    assert binary_cross_entropy(empty, empty).item() == 0.0
    x = torch.ones(1, 1, 2, 2)
    assert binary_cross_entropy(x, x, torch.zeros(1, 1, 2, 2)).item() == 0.0


def test_normaliser_replaces_the_element_count() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 4, 4, generator=gen)
    target = torch.rand(2, 3, 4, 4, generator=gen)
    mask = (torch.rand(2, 1, 4, 4, generator=gen) > 0.5).float()
    unnormalised_sum = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * mask).sum()
    got = BCEHeatmapLoss()(logits, target, mask, torch.tensor(10.0))
    torch.testing.assert_close(got, unnormalised_sum / 10.0)
    torch.testing.assert_close(binary_cross_entropy(logits, target, mask, torch.tensor(0.0)), unnormalised_sum)
