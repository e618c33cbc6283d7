"""GHMCenterNet against a direct float64 computation written out here (numpy loops)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from centernet.losses import GHMCenterNet, build_heatmap_loss


def reference(logits: np.ndarray, target: np.ndarray, mask: np.ndarray, *, bins: int, beta: float,
              density: np.ndarray | None = None) -> float:
    """The docs/loss_study.md definition in float64, one element at a time.

    ``density`` replaces the batch counts (for the EMA / epoch cases); None = the batch histogram.
    """
    p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    y = target.astype(np.float64)
    valid = np.broadcast_to(mask, logits.shape) > 0
    positive = y == 1.0
    g = np.abs(p - positive)
    index = np.minimum(np.floor(g * bins).astype(int), bins - 1)
    counts = np.zeros(bins)
    for b, v in zip(index.ravel(), valid.ravel(), strict=True):
        counts[b] += v
    total, nonempty = counts.sum(), (counts > 0).sum()
    dens = counts if density is None else density
    loss, num_pos = 0.0, 0.0
    for i in np.ndindex(logits.shape):
        if not valid[i]:
            continue
        w = total / (dens[index[i]] * nonempty)
        if positive[i]:
            loss -= w * math.log(p[i])
            num_pos += 1
        else:
            loss -= w * (1 - y[i]) ** beta * math.log(1 - p[i])
    return loss / max(num_pos, 1.0)  # no positive: the sum itself, as in CenterNet


def random_inputs(seed: int, *, positives: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, 6, 6, generator=gen) * 2
    target = torch.rand(2, 3, 6, 6, generator=gen) * 0.95
    if positives:
        target[0, 1, 2, 3] = target[1, 0, 4, 4] = target[1, 2, 0, 5] = 1.0
    mask = (torch.rand(2, 1, 6, 6, generator=gen) > 0.3).float()
    mask[0, 0, 2, 3] = 1.0  # one positive counts
    mask[1, 0, 0, 5] = 0.0  # one positive masked out
    return logits, target, mask


@pytest.mark.parametrize(("bins", "beta"), [(10, 4.0), (3, 2.0), (1, 4.0)])
def test_batch_density_matches_float64_reference(bins: int, beta: float) -> None:
    logits, target, mask = random_inputs(bins)
    loss = GHMCenterNet(beta=beta, bins=bins)(logits, target, mask)
    expected = reference(logits.numpy(), target.numpy(), mask.numpy(), bins=bins, beta=beta)
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(expected, rel=1e-5)


def test_no_mask_and_no_positive() -> None:
    logits, target, _ = random_inputs(5, positives=False)
    ones = np.ones((2, 1, 6, 6))
    loss_fn = GHMCenterNet(bins=5)
    assert loss_fn.normaliser(target, None).item() == 0.0
    loss = loss_fn(logits, target)  # no positive: the negative sum divided by 1
    expected = reference(logits.numpy(), target.numpy(), ones, bins=5, beta=4.0)
    assert math.isfinite(loss.item()) and loss.item() == pytest.approx(expected, rel=1e-5)
    assert GHMCenterNet()(logits, target, torch.zeros(2, 1, 6, 6)).item() == 0.0  # all masked


def test_normaliser_is_masked_positives_and_replaces_the_count() -> None:
    logits, target, mask = random_inputs(7)
    loss_fn = build_heatmap_loss("ghm_centernet", bins=4)
    assert loss_fn.normaliser(target, mask).item() == float(((target == 1) * mask).sum())
    own = loss_fn(logits, target, mask)
    doubled = loss_fn(logits, target, mask, normaliser=2 * loss_fn.normaliser(target, mask))
    assert doubled.item() == pytest.approx(own.item() / 2, rel=1e-6)


def test_ema_density_second_call_matches_reference() -> None:
    first, second = random_inputs(11), random_inputs(12)
    loss_fn = GHMCenterNet(bins=4, momentum=0.75, ema_init="zero")
    loss_fn(*first)
    acc = loss_fn.ema_counts.double().numpy().copy()
    loss = loss_fn(*second)
    counts = loss_fn.last_bin_counts.double().numpy()
    expected_acc = np.where(counts > 0, 0.75 * acc + 0.25 * counts, acc)
    np.testing.assert_allclose(loss_fn.ema_counts.numpy(), expected_acc, rtol=1e-6)
    logits, target, mask = (t.numpy() for t in second)
    expected = reference(logits, target, mask, bins=4, beta=4.0, density=expected_acc)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_gradient_finite_and_equal_to_the_closed_form() -> None:
    logits, target, mask = random_inputs(3)
    logits[0, 0, 0, :3] = torch.tensor([-60.0, 60.0, 0.0])  # saturated logits stay finite
    logits.requires_grad_(True)
    loss_fn = GHMCenterNet(bins=6)
    loss_fn(logits, target, mask).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    with torch.no_grad():  # d L / d x = w (p - 1) / num_pos at a peak, w (1 - y)^beta p / num_pos elsewhere
        x = logits.double()
        p = torch.sigmoid(x)
        positive = target == 1
        valid = mask.expand_as(x) > 0
        weight = loss_fn.element_weights((p - positive.double()).abs().float(), valid).double()
        num_pos = (positive & valid).sum().double()
        expected = torch.where(positive, p - 1, (1 - target.double()) ** 4 * p) * weight / num_pos
    torch.testing.assert_close(logits.grad.double(), expected, rtol=1e-4, atol=1e-9)
