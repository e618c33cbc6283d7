"""Tests for centernet.losses.ghm.GHMC with hand-worked bin counts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from centernet.losses import GHMC


def _batch(grad_norms: list[float], labels: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits/targets [1, 1, 1, N] whose elements have exactly the given g = |p - y|."""
    g = torch.tensor(grad_norms, dtype=torch.float64)
    y = torch.tensor(labels, dtype=torch.float64)
    p = torch.where(y > 0, 1 - g, g)
    logits = torch.log(p / (1 - p))
    return logits.float().view(1, 1, 1, -1), y.float().view(1, 1, 1, -1)


def _expected(grad_norms: list[float], bin_weights: list[float], bins: int = 2) -> float:
    """sum w * BCE / N for binary targets, where BCE = -log(1 - g) and bins split [0, 1] equally."""
    total = sum(-math.log(1 - g) * bin_weights[min(int(g * bins), bins - 1)] for g in grad_norms)
    return total / len(grad_norms)


# batch A: g in bin 0 (< 0.5) four times, bin 1 twice; batch B: bin 0 once, bin 1 five times
G_A, Y_A = [0.1, 0.1, 0.2, 0.3, 0.9, 0.6], [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
G_B, Y_B = [0.2, 0.7, 0.8, 0.6, 0.9, 0.55], [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]


def test_batch_density_hand_computed() -> None:
    loss_fn = GHMC(bins=2)
    loss = loss_fn(*_batch(G_A, Y_A))
    assert loss_fn.last_bin_counts.tolist() == [4, 2]
    # N = 6, n = 2 non-empty bins: w0 = 6 / 4 / 2, w1 = 6 / 2 / 2
    assert loss.item() == pytest.approx(_expected(G_A, [0.75, 1.5]), rel=1e-5)
    assert loss.dtype == torch.float32 and loss.shape == ()


def test_single_nonempty_bin_is_plain_mean_bce() -> None:
    logits, target = _batch([0.1, 0.2, 0.15], [0.0, 1.0, 0.0])  # all in bin 0 of 4
    loss = GHMC(bins=4)(logits, target)
    assert loss.item() == pytest.approx(F.binary_cross_entropy_with_logits(logits, target).item(), rel=1e-6)


def test_last_edge_includes_gradient_norm_one() -> None:
    logits = torch.tensor([-30.0, 30.0]).view(1, 1, 1, 2)  # p ~ 0 and ~ 1
    target = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)  # g == 1 in float32
    loss_fn = GHMC(bins=10)
    loss_fn(logits, target)
    assert loss_fn.last_bin_counts.tolist() == [0] * 9 + [2]


def test_ema_density_two_calls() -> None:
    loss_fn = GHMC(bins=2, momentum=0.5)
    assert loss_fn.density == "ema"
    first = loss_fn(*_batch(G_A, Y_A))
    assert loss_fn.ema_counts.tolist() == [4.0, 2.0]  # initialised with the first counts
    assert first.item() == pytest.approx(_expected(G_A, [0.75, 1.5]), rel=1e-5)
    second = loss_fn(*_batch(G_B, Y_B))
    assert loss_fn.last_bin_counts.tolist() == [1, 5]
    acc = [0.5 * 4 + 0.5 * 1, 0.5 * 2 + 0.5 * 5]  # [2.5, 3.5]
    assert loss_fn.ema_counts.tolist() == pytest.approx(acc)
    weights = [6 / acc[0] / 2, 6 / acc[1] / 2]
    assert second.item() == pytest.approx(_expected(G_B, weights), rel=1e-5)


def test_ema_bin_starts_at_first_nonzero_count_and_skips_empty_bins() -> None:
    loss_fn = GHMC(bins=2, momentum=0.5)
    loss_fn(*_batch([0.1] * 6, [0.0] * 6))
    assert loss_fn.ema_counts.tolist() == [6.0, 0.0]
    loss_fn(*_batch(G_A, Y_A))  # counts [4, 2]: bin 1 seen for the first time
    assert loss_fn.ema_counts.tolist() == pytest.approx([5.0, 2.0])
    loss_fn(*_batch([0.9] * 3, [0.0] * 3))  # bin 0 empty: its average is kept, not decayed
    assert loss_fn.ema_counts.tolist() == pytest.approx([5.0, 2.5])


def test_statistics_frozen_in_eval_mode() -> None:
    loss_fn = GHMC(bins=2, momentum=0.5)
    loss_fn(*_batch(G_A, Y_A))
    loss_fn.eval()
    loss = loss_fn(*_batch(G_B, Y_B))
    assert loss_fn.ema_counts.tolist() == [4.0, 2.0]
    assert loss.item() == pytest.approx(_expected(G_B, [6 / 4 / 2, 6 / 2 / 2]), rel=1e-5)


def test_epoch_density_two_epochs_and_checkpoint_round_trip() -> None:
    loss_fn = GHMC(bins=2, density="epoch")
    loss_fn.start_epoch()
    # epoch 1: no previous histogram, the batch density is used
    first = loss_fn(*_batch(G_A, Y_A))
    second = loss_fn(*_batch(G_B, Y_B))
    assert first.item() == pytest.approx(_expected(G_A, [0.75, 1.5]), rel=1e-5)
    assert second.item() == pytest.approx(_expected(G_B, [6 / 1 / 2, 6 / 5 / 2]), rel=1e-5)
    assert loss_fn.epoch_counts.tolist() == [5, 7]
    loss_fn.end_epoch()
    assert loss_fn.previous_epoch_counts.tolist() == [5, 7] and loss_fn.epoch_counts.tolist() == [0, 0]
    # epoch 2: weight = sum(hist) / (hist[b] * n) = 12 / (5 * 2), 12 / (7 * 2)
    third = loss_fn(*_batch(G_A, Y_A))
    assert third.item() == pytest.approx(_expected(G_A, [1.2, 12 / 14]), rel=1e-5)
    state = loss_fn.state_dict()
    assert {"ema_counts", "epoch_counts", "previous_epoch_counts"} <= set(state)
    restored = GHMC(bins=2, density="epoch")
    restored.load_state_dict(state)
    assert restored.epoch_counts.tolist() == [4, 2]
    torch.testing.assert_close(restored(*_batch(G_A, Y_A)), loss_fn(*_batch(G_A, Y_A)))


def test_epoch_density_bin_empty_last_epoch_falls_back_to_batch_count() -> None:
    loss_fn = GHMC(bins=2, density="epoch")
    loss_fn(*_batch([0.1] * 4, [0.0] * 4))
    loss_fn.end_epoch()  # previous histogram [4, 0]
    loss = loss_fn(*_batch(G_A, Y_A))  # counts [4, 2]: bin 0 from the epoch (scaled to 6), bin 1 batch
    assert loss.item() == pytest.approx(_expected(G_A, [6 / 6 / 2, 6 / 2 / 2]), rel=1e-5)


def test_gradient_is_p_minus_y_times_weight_over_n_valid() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(2, 3, 4, 4, generator=gen) * 2).requires_grad_(True)
    target = torch.rand(2, 3, 4, 4, generator=gen)  # soft targets
    mask = (torch.rand(2, 1, 4, 4, generator=gen) > 0.25).float()
    bins = 5
    loss = GHMC(bins=bins)(logits, target, mask)
    loss.backward()
    with torch.no_grad():
        p = torch.sigmoid(logits)
        g = (p - target).abs()
        valid = mask.expand_as(g) > 0
        index = torch.clamp((g * bins).floor().long(), max=bins - 1)
        counts = torch.stack([(valid & (index == b)).sum() for b in range(bins)]).double()
        n_valid = valid.sum().double()
        num_nonempty = (counts > 0).sum().double()
        w = torch.zeros_like(g, dtype=torch.float64)
        for b in range(bins):
            if counts[b] > 0:
                w[index == b] = n_valid / counts[b] / num_nonempty
        w = w * valid
        expected_grad = ((p - target).double() * w / n_valid).float()
        expected_loss = (w * F.binary_cross_entropy_with_logits(logits, target, reduction="none")).sum()
    torch.testing.assert_close(logits.grad, expected_grad, rtol=1e-5, atol=1e-7)
    assert loss.item() == pytest.approx((expected_loss / n_valid).item(), rel=1e-5)


def test_mask_ignored_elements_not_counted() -> None:
    logits_a, target_a = _batch(G_A, Y_A)
    logits_x, target_x = _batch([0.95, 0.99, 0.05], [0.0, 1.0, 0.0])
    logits = torch.cat([logits_a, logits_x], dim=3)
    target = torch.cat([target_a, target_x], dim=3)
    mask = torch.cat([torch.ones(1, 1, 1, 6), torch.zeros(1, 1, 1, 3)], dim=3)
    loss_fn = GHMC(bins=2)
    loss = loss_fn(logits, target, mask)
    assert loss_fn.last_bin_counts.tolist() == [4, 2]
    assert loss.item() == pytest.approx(_expected(G_A, [0.75, 1.5]), rel=1e-5)


def test_no_positive_all_masked_and_empty_are_finite() -> None:
    logits, target = _batch([0.1, 0.6], [0.0, 0.0])
    loss = GHMC(bins=2)(logits, target)  # no positive: two bins of one element, w = 2 / 1 / 2 = 1
    assert loss.item() == pytest.approx(_expected([0.1, 0.6], [1.0, 1.0]), rel=1e-5)
    masked = GHMC(bins=2)(logits, target, torch.zeros_like(logits))
    assert masked.item() == 0.0
    empty = torch.zeros(0, 3, 4, 4)
    loss_fn = GHMC(bins=3, density="epoch")
    assert loss_fn(empty, empty).item() == 0.0
    assert loss_fn.last_bin_counts.tolist() == [0, 0, 0]


def test_reduce_counts_hook_sees_and_replaces_counts() -> None:
    seen: list[list[int]] = []

    def two_identical_ranks(counts: torch.Tensor) -> torch.Tensor:
        seen.append(counts.tolist())
        return counts * 2

    loss_fn = GHMC(bins=2)
    loss_fn.reduce_counts = two_identical_ranks
    loss = loss_fn(*_batch(G_A, Y_A))
    assert seen == [[4, 2]]
    assert loss_fn.last_bin_counts.tolist() == [8, 4]
    # global N = 12, counts [8, 4]: the same weights, divided by the local N = 6
    assert loss.item() == pytest.approx(_expected(G_A, [0.75, 1.5]), rel=1e-5)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="bins"):
        GHMC(bins=0)
    with pytest.raises(ValueError, match="momentum"):
        GHMC(momentum=1.0)
    with pytest.raises(ValueError, match="density"):
        GHMC(density="median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="density='ema'"):
        GHMC(momentum=0.75, density="batch")
    with pytest.raises(ValueError, match="density='ema'"):
        GHMC(density="ema")


def test_normaliser_replaces_n_valid_in_loss_and_gradient() -> None:
    logits, target = _batch(G_A, Y_A)
    logits.requires_grad_(True)
    loss = GHMC(bins=2)(logits, target, None, torch.tensor(24.0))  # N_valid = 6 -> 24: a quarter
    assert loss.item() == pytest.approx(_expected(G_A, [0.75, 1.5]) / 4, rel=1e-5)
    loss.backward()
    plain = logits.detach().clone().requires_grad_(True)
    GHMC(bins=2)(plain, target).backward()
    torch.testing.assert_close(logits.grad, plain.grad / 4)
    masked = GHMC(bins=2)(logits, target, torch.zeros_like(logits), torch.tensor(0.0))
    assert masked.item() == 0.0
