"""Tests for centernet.losses.registry: HEATMAP_LOSSES and build_heatmap_loss."""

from __future__ import annotations

import math

import pytest
import torch

from centernet.losses import (
    GHMC,
    HEATMAP_LOSSES,
    GHMCenterNet,
    binary_cross_entropy,
    build_heatmap_loss,
    penalty_reduced_focal_loss,
    sigmoid_focal_loss,
)


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, generator=gen)
    target = torch.rand(2, 3, 4, 4, generator=gen) * 0.9
    target[0, 1, 2, 2] = 1.0
    mask = (torch.rand(2, 1, 4, 4, generator=gen) > 0.2).float()
    return logits, target, mask


def test_registry_names() -> None:
    assert set(HEATMAP_LOSSES) == {"penalty_reduced_focal", "focal", "ghm_c", "ghm_centernet", "bce"}


def test_built_modules_forward_their_parameters() -> None:
    logits, target, mask = _inputs()
    cases = [
        (
            build_heatmap_loss("penalty_reduced_focal", alpha=1.0, beta=3.0),
            penalty_reduced_focal_loss(logits, target, mask, alpha=1.0, beta=3.0),
        ),
        (build_heatmap_loss("penalty_reduced_focal"), penalty_reduced_focal_loss(logits, target, mask)),
        (
            build_heatmap_loss("focal", alpha=0.5, gamma=1.0),
            sigmoid_focal_loss(logits, target, mask, alpha=0.5, gamma=1.0),
        ),
        (build_heatmap_loss("bce"), binary_cross_entropy(logits, target, mask)),
        (build_heatmap_loss("ghm_c", bins=4), GHMC(bins=4)(logits, target, mask)),
        (build_heatmap_loss("ghm_centernet", beta=2.0), GHMCenterNet(beta=2.0)(logits, target, mask)),
    ]
    for module, expected in cases:
        assert isinstance(module, torch.nn.Module)
        torch.testing.assert_close(module(logits, target, mask), expected)


def test_ghm_c_parameters() -> None:
    module = build_heatmap_loss("ghm_c", bins=7, momentum=0.75, density="ema")
    assert isinstance(module, GHMC)
    assert (module.bins, module.momentum, module.density) == (7, 0.75, "ema")
    assert module.ema_init == "first_count"
    module = build_heatmap_loss("ghm_centernet", bins=5, density="batch_then_epoch", switch_epoch=3)
    assert isinstance(module, GHMCenterNet)
    assert (module.bins, module.density, module.switch_epoch, module.beta) == (5, "batch_then_epoch", 3, 4.0)


def test_bce_hand_value_through_registry() -> None:
    zeros = torch.zeros(1, 1, 1, 2)
    loss = build_heatmap_loss("bce")(zeros, torch.tensor([1.0, 0.0]).view(1, 1, 1, 2))
    assert loss.item() == pytest.approx(math.log(2.0), rel=1e-6)


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="ghm_c") as info:
        build_heatmap_loss("ghm")
    assert "'ghm'" in str(info.value) and "penalty_reduced_focal" in str(info.value)


def test_unknown_parameter_is_named() -> None:
    with pytest.raises(TypeError, match="gamma") as info:
        build_heatmap_loss("penalty_reduced_focal", gamma=2.0)
    assert "beta" in str(info.value)
    with pytest.raises(TypeError, match="weight"):
        build_heatmap_loss("bce", weight=1.0)
