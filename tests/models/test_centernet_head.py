"""Tests for centernet.models.heads."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from centernet.models.heads import LTRB_OUTPUT_NAMES, OUTPUT_NAMES, CenterNetHead, prior_bias


def test_output_shapes_and_keys() -> None:
    head = CenterNetHead(16, 5, head_conv=8)
    out = head(torch.randn(2, 16, 6, 7))
    assert tuple(out) == OUTPUT_NAMES == head.output_names == ("heatmap", "size", "offset")
    assert head.box == "size_offset"
    assert out["heatmap"].shape == (2, 5, 6, 7)
    assert out["size"].shape == (2, 2, 6, 7)
    assert out["offset"].shape == (2, 2, 6, 7)


def test_empty_batch() -> None:
    out = CenterNetHead(4, 3, head_conv=8)(torch.zeros(0, 4, 5, 5))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "heatmap": (0, 3, 5, 5),
        "size": (0, 2, 5, 5),
        "offset": (0, 2, 5, 5),
    }


def test_branch_structure() -> None:
    head = CenterNetHead(256, 80, head_conv=64)
    hidden, relu, final = head.heatmap
    assert isinstance(hidden, nn.Conv2d) and hidden.kernel_size == (3, 3) and hidden.padding == (1, 1)
    assert hidden.bias is not None and hidden.out_channels == 64
    assert isinstance(relu, nn.ReLU)
    assert final.kernel_size == (1, 1) and final.out_channels == 80
    single = CenterNetHead(32, 3, head_conv=0)
    assert len(single.size) == 1 and single.size[0].kernel_size == (1, 1)
    assert single(torch.randn(1, 32, 4, 4))["heatmap"].shape == (1, 3, 4, 4)


def test_heatmap_bias_hand_computed() -> None:
    head = CenterNetHead(8, 4, prior_prob=0.1)
    # -log((1 - 0.1) / 0.1) = -log(9) = -2.1972245773...
    expected = -2.1972245773362196
    assert prior_bias(0.1) == pytest.approx(expected, abs=1e-12)
    torch.testing.assert_close(head.heatmap[-1].bias, torch.full((4,), expected))
    assert prior_bias(0.01) == pytest.approx(-math.log(99.0), abs=1e-12)
    assert torch.sigmoid(torch.tensor(prior_bias(0.3), dtype=torch.float64)).item() == pytest.approx(0.3)


def test_final_layer_init() -> None:
    torch.manual_seed(0)
    head = CenterNetHead(256, 80, head_conv=64)
    finals = torch.cat([branch[-1].weight.flatten() for branch in (head.heatmap, head.size, head.offset)])
    assert finals.numel() == (80 + 2 + 2) * 64
    assert abs(finals.std().item() - 0.001) < 0.00005  # 5376 samples: relative noise ~1%
    assert abs(finals.mean().item()) < 0.00005
    assert finals.abs().max().item() < 0.006  # no draw beyond 6 sigma
    assert torch.equal(head.size[-1].bias, torch.zeros(2))
    assert torch.equal(head.offset[-1].bias, torch.zeros(2))


def test_initial_probability_is_the_prior() -> None:
    torch.manual_seed(0)
    head = CenterNetHead(32, 3, prior_prob=0.1)
    probs = torch.sigmoid(head(torch.randn(2, 32, 8, 8))["heatmap"])
    torch.testing.assert_close(probs, torch.full_like(probs, 0.1), atol=2e-3, rtol=0)


def test_invalid_arguments() -> None:
    for bad in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="prior_prob must be in \\(0, 1\\)"):
            CenterNetHead(8, 2, prior_prob=bad)
    with pytest.raises(ValueError, match="num_classes must be >= 1, got 0"):
        CenterNetHead(8, 0)
    with pytest.raises(ValueError, match=r"model.head.box: 'xywh' is not one of \['size_offset', 'ltrb'\]"):
        CenterNetHead(8, 2, box="xywh")
    with pytest.raises(ValueError, match=r"model.head.ltrb_scale must be > 0, got 0.0"):
        CenterNetHead(8, 2, box="ltrb", ltrb_scale=0.0)


def test_ltrb_head_keys_shapes_and_state_dict() -> None:
    head = CenterNetHead(16, 5, head_conv=8, box="ltrb")
    out = head(torch.randn(2, 16, 6, 7))
    assert tuple(out) == LTRB_OUTPUT_NAMES == head.output_names == ("heatmap", "ltrb")
    assert out["heatmap"].shape == (2, 5, 6, 7) and out["ltrb"].shape == (2, 4, 6, 7)
    assert {key.split(".")[0] for key in head.state_dict()} == {"heatmap", "ltrb"}
    assert head.ltrb[-1].out_channels == 4 and torch.equal(head.ltrb[-1].bias, torch.zeros(4))


def test_ltrb_output_is_rectified_and_scaled() -> None:
    head = CenterNetHead(3, 1, head_conv=0, box="ltrb", ltrb_scale=16.0)
    final = head.ltrb[-1]
    nn.init.zeros_(final.weight)
    with torch.no_grad():
        final.bias.copy_(torch.tensor([-1.0, 0.5, 2.0, 0.0]))
    ltrb = head(torch.randn(1, 3, 2, 2))["ltrb"]
    # relu(raw) * 16: (0, 8, 32, 0) at every cell
    torch.testing.assert_close(ltrb, torch.tensor([0.0, 8.0, 32.0, 0.0]).view(1, 4, 1, 1).expand(1, 4, 2, 2))

