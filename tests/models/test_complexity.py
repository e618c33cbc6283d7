"""Tests for centernet.models.complexity (parameter and FLOP counting)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from centernet.models import build_centernet
from centernet.models.complexity import count_flops, count_parameters, measure_complexity
from centernet.models.dcn import DeformConv
from tests.models.test_backbone_hourglass import small_hourglass_detector


def test_plain_conv_hand_computed() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1)
    total, per_module = count_flops(conv, torch.zeros(1, 3, 16, 16))
    assert total == 2 * 8 * 3 * 3 * 3 * 16 * 16  # 2 FLOPs per multiply-add, bias not counted: 110592
    assert per_module == {"": total}
    assert count_parameters(conv) == 8 * 3 * 9 + 8


def test_deformable_conv_hand_computed() -> None:
    dcn = DeformConv(4, 6, 3, padding=1)
    total, _ = count_flops(dcn, torch.zeros(2, 4, 8, 8))
    offsets = 2 * 2 * 27 * 4 * 9 * 64  # conv_offset_mask: 3 * 9 channels
    deform = 2 * 2 * 6 * 4 * 9 * 64
    assert total == offsets + deform


def test_empty_module_costs_nothing() -> None:
    total, per_module = count_flops(nn.Identity(), torch.zeros(1, 3, 4, 4))
    assert total == 0 and set(per_module.values()) <= {0}
    assert count_parameters(nn.Identity()) == 0


def _resdcn(device: str = "cpu") -> nn.Module:
    with torch.device(device):
        return build_centernet(
            backbone="resnet18", backbone_weights=None, neck="dcn_deconv", neck_channels=(32, 32, 32),
            num_classes=3, head_conv=8, prior_prob=0.1,
        )  # fmt: skip


def test_parts_add_up_and_meta_matches_cpu() -> None:
    model = _resdcn()
    info = measure_complexity(model, (64, 96))
    assert [p.name for p in info.parts] == ["backbone", "neck", "head.heatmap", "head.size", "head.offset"]
    assert sum(p.parameters for p in info.parts) == info.parameters == count_parameters(model)
    assert sum(p.flops for p in info.parts) == info.flops
    assert info.output_stride == 4 and info.input_size == (64, 96)
    # hand-computed head branch: 3x3 conv 32 -> 8 and 1x1 conv 8 -> 3 on the 16x24 map
    assert info.parts[2].flops == 2 * 16 * 24 * (8 * 32 * 9 + 3 * 8)
    assert model.training  # mode restored
    assert measure_complexity(_resdcn("meta"), (64, 96)) == info


def test_stacked_model_counts_the_last_head_at_inference() -> None:
    info = measure_complexity(small_hourglass_detector(), (32, 32))
    flops = {p.name: p.flops for p in info.parts}
    assert [p.name for p in info.parts][2:] == [f"head.{s}.{b}" for s in (0, 1) for b in ("heatmap", "size", "offset")]
    assert flops["head.0.heatmap"] == 0 and flops["head.1.heatmap"] > 0
    assert sum(flops.values()) == info.flops


def test_bad_input_size() -> None:
    with pytest.raises(ValueError, match=r"input_size must be \(height, width\), got \[64\]"):
        measure_complexity(_resdcn("meta"), (64,))
