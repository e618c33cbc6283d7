"""Tests for centernet.losses.regression.reg_l1_loss (the original RegL1Loss)."""

from __future__ import annotations

import pytest
import torch

from centernet.losses import reg_l1_loss

EPS = 1e-4  # the original's normaliser epsilon


def _map() -> torch.Tensor:
    """[1, 2, 2, 3] map whose channel c at flat position i holds 10 * c + i."""
    return torch.stack([torch.arange(6.0), torch.arange(6.0) + 10]).view(1, 2, 2, 3)


def test_hand_computed() -> None:
    index = torch.tensor([[0, 4, 5]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    target = torch.tensor([[[1.0, 10.0], [4.0, 12.0], [100.0, 100.0]]])
    # slot 0 reads (0, 10): |0-1| + |10-10| = 1; slot 1 reads (4, 14): 0 + 2 = 2; slot 2 masked
    expected = (1.0 + 2.0) / (2 * 2 + EPS)
    assert reg_l1_loss(_map(), target, index, mask).item() == pytest.approx(expected, rel=1e-6)


def test_matches_loop_reference_and_is_fp32() -> None:
    gen = torch.Generator().manual_seed(0)
    pred = torch.randn(3, 2, 5, 4, generator=gen)
    index = torch.randint(0, 20, (3, 6), generator=gen)
    mask = (torch.rand(3, 6, generator=gen) > 0.4).float()
    target = torch.randn(3, 6, 2, generator=gen)
    total, count = 0.0, 0.0
    for b in range(3):
        for m in range(6):
            y, x = divmod(int(index[b, m]), 4)
            for c in range(2):
                total += abs(float(pred[b, c, y, x]) - float(target[b, m, c])) * float(mask[b, m])
                count += float(mask[b, m])
    got = reg_l1_loss(pred.half(), target, index, mask)
    assert got.dtype == torch.float32
    assert reg_l1_loss(pred, target, index, mask).item() == pytest.approx(total / (count + EPS), rel=1e-5)


def test_round_trip_targets_written_into_map_give_zero() -> None:
    gen = torch.Generator().manual_seed(1)
    index = torch.tensor([[3, 7, 11], [0, 5, 2]])
    target = torch.randn(2, 3, 2, generator=gen)
    pred = torch.zeros(2, 2, 3, 4)
    flat = pred.view(2, 2, 12)
    for b in range(2):
        for m in range(3):
            flat[b, :, index[b, m]] = target[b, m]
    assert reg_l1_loss(pred, target, index, torch.ones(2, 3)).item() == 0.0


def test_padding_slots_with_any_index_are_ignored() -> None:
    index = torch.tensor([[4, -1, 999]])  # padding slots may hold garbage indices
    mask = torch.tensor([[1.0, 0.0, 0.0]])
    target = torch.tensor([[[4.0, 14.0], [0.0, 0.0], [0.0, 0.0]]])
    assert reg_l1_loss(_map(), target, index, mask).item() == 0.0


def test_empty_and_no_objects_are_zero() -> None:
    assert reg_l1_loss(torch.zeros(2, 2, 4, 4), torch.zeros(2, 0, 2), torch.zeros(2, 0), torch.zeros(2, 0)) == 0
    no_objects = reg_l1_loss(_map(), torch.ones(1, 3, 2), torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3))
    assert no_objects.item() == 0.0


def test_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="target shape"):
        reg_l1_loss(_map(), torch.zeros(1, 3, 3), torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="mask shape"):
        reg_l1_loss(_map(), torch.zeros(1, 3, 2), torch.zeros(1, 3), torch.zeros(1, 2))
