"""Tests for the stacked hourglass backbone and the detector's per-stack heads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from centernet.losses import CenterNetCriterion, build_heatmap_loss
from centernet.models import BACKBONES, NECKS, CenterNet, CenterNetHead, build_centernet
from centernet.models.backbones.hourglass import HourglassBackbone
from centernet.models.original_checkpoint import map_original_key
from tests.conftest import CHECKPOINT_KEYS_PATH

# a 2-level, 2-stack hourglass small enough for CPU tests (input sides multiples of 4 * 2**2 = 16)
SMALL = {"depth": 2, "dims": (16, 16, 24), "modules": (1, 1, 2), "num_stacks": 2, "cnv_dim": 16, "stem_channels": 8}


def small_hourglass_detector(num_classes: int = 3, box: str = "size_offset") -> CenterNet:
    """A CenterNet around the small hourglass, one head per stack (as build_centernet does)."""
    backbone = HourglassBackbone(**SMALL)  # type: ignore[arg-type]
    heads = torch.nn.ModuleList(
        CenterNetHead(16, num_classes, head_conv=8, box=box) for _ in range(SMALL["num_stacks"])
    )
    return CenterNet(backbone, NECKS["identity"](feature_channels=backbone.feature_channels), heads)


def test_hourglass104_matches_the_original_keys_and_size() -> None:
    with torch.device("meta"):  # shapes only: 191M parameters without allocating them
        model = build_centernet(
            backbone="hourglass104",
            backbone_weights=None,
            neck="identity",
            neck_channels=[],
            num_classes=80,
            head_conv=256,
            prior_prob=0.1,
        )
    original = json.loads(CHECKPOINT_KEYS_PATH.read_text())["hourglass"]
    expected = {map_original_key(k): tuple(v) for k, v in original.items()}
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == expected
    assert sum(p.numel() for p in model.parameters()) == 191_284_008
    assert (model.num_stacks, model.size_divisor, model.output_stride) == (2, 128, 4)
    assert BACKBONES["hourglass104"] is not None


def test_small_hourglass_maps_per_stack() -> None:
    backbone = HourglassBackbone(**SMALL)  # type: ignore[arg-type]
    maps = backbone(torch.randn(2, 3, 32, 48))
    assert [tuple(m.shape) for m in maps] == [(2, 16, 8, 12), (2, 16, 8, 12)]
    assert backbone.size_divisor == 16 and backbone.feature_channels == (16, 16)


def test_training_returns_every_stack_and_eval_the_last() -> None:
    torch.manual_seed(0)
    model = small_hourglass_detector()
    images = torch.randn(2, 3, 32, 32)
    outputs = model.train()(images)
    assert isinstance(outputs, list) and len(outputs) == 2
    assert all(tuple(o["heatmap"].shape) == (2, 3, 8, 8) for o in outputs)
    model.eval()
    with torch.no_grad():
        last = model(images)
        expected = model.head[1](model.backbone(images)[-1])
    assert set(last) == {"heatmap", "size", "offset"}
    for key in last:
        assert torch.equal(last[key], expected[key])


def test_intermediate_supervision_trains_the_first_stack() -> None:
    torch.manual_seed(0)
    model = small_hourglass_detector()
    criterion = CenterNetCriterion(build_heatmap_loss("penalty_reduced_focal"))
    heatmap = torch.zeros(2, 3, 8, 8)
    heatmap[:, 1, 4, 4] = 1.0
    targets = {
        "heatmap": heatmap,
        "size": torch.full((2, 1, 2), 3.0),
        "offset": torch.full((2, 1, 2), 0.5),
        "index": torch.full((2, 1), 4 * 8 + 4),
        "mask": torch.ones(2, 1),
    }
    outputs = model.train()(torch.randn(2, 3, 32, 32))
    losses = criterion(outputs, targets)
    per_stack = [criterion(o, targets) for o in outputs]
    for key, value in losses.items():  # the criterion averages the stacks
        assert torch.allclose(value, (per_stack[0][key] + per_stack[1][key]) / 2)
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.parameters())  # both heads and every stack learn


def test_input_size_and_head_count_are_checked() -> None:
    model = small_hourglass_detector()
    with pytest.raises(ValueError, match="must be multiples of 16"):
        model(torch.randn(1, 3, 40, 32))
    backbone = HourglassBackbone(**SMALL)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="the backbone has 2 stacks but 1 heads were given"):
        CenterNet(backbone, NECKS["identity"](feature_channels=(16,)), CenterNetHead(16, 3))
    with pytest.raises(ValueError, match=r"identity neck: has no layers, so model.neck.channels must be \[\]"):
        NECKS["identity"](feature_channels=(16,), channels=[64])
    with pytest.raises(ValueError, match="hourglass: expected depth >= 1 and depth \\+ 1 dims"):
        HourglassBackbone(depth=2, dims=(16, 16), modules=(1, 1, 1))


def test_local_weights_round_trip_ignoring_heads(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = HourglassBackbone(**SMALL)  # type: ignore[arg-type]
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    state["module.hm.0.1.weight"] = torch.zeros(80, 16, 1, 1)  # an original checkpoint's head: ignored
    torch.save({"state_dict": state}, tmp_path / "hg.pth")
    torch.manual_seed(2)
    loaded = HourglassBackbone(**SMALL, weights=str(tmp_path / "hg.pth"))  # type: ignore[arg-type]
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(ValueError, match="there are no ImageNet weights"):
        HourglassBackbone(**SMALL, weights="imagenet")  # type: ignore[arg-type]
