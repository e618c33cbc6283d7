"""Tests for centernet.models.detector (CenterNet and build_centernet)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from centernet.models import CenterNet, CenterNetHead, DeconvNeck, build_centernet
from tests.conftest import CHECKPOINT_KEYS_PATH

CHECKPOINT_KEYS = CHECKPOINT_KEYS_PATH
# original msra_resnet state_dict prefix -> ours
ORIGINAL_PREFIXES = {
    "deconv_layers.": "neck.layers.",
    "hm.": "head.heatmap.",
    "wh.": "head.size.",
    "reg.": "head.offset.",
}


def _build(backbone: str = "resnet18", num_classes: int = 3, head_conv: int = 64) -> CenterNet:
    return build_centernet(
        backbone=backbone,
        backbone_weights=None,
        neck="deconv",
        neck_channels=[256, 256, 256],
        num_classes=num_classes,
        head_conv=head_conv,
        prior_prob=0.1,
    )


def _to_ours(original_key: str) -> str:
    for prefix, ours in ORIGINAL_PREFIXES.items():
        if original_key.startswith(prefix):
            return ours + original_key[len(prefix) :]
    return "backbone." + original_key


@pytest.fixture(scope="module")
def model() -> CenterNet:
    torch.manual_seed(0)
    return _build()


def test_output_shapes_train_and_eval(model: CenterNet) -> None:
    images = torch.randn(2, 3, 64, 64)
    expected = {"heatmap": (2, 3, 16, 16), "size": (2, 2, 16, 16), "offset": (2, 2, 16, 16)}
    model.train()
    train_out = model(images)
    model.eval()
    with torch.no_grad():
        eval_out = model(images)
    assert list(train_out) == list(eval_out) == ["heatmap", "size", "offset"]
    assert {k: tuple(v.shape) for k, v in train_out.items()} == expected
    assert {k: tuple(v.shape) for k, v in eval_out.items()} == expected
    assert model.output_stride == 4
    assert model.size_divisor == 32


def test_ltrb_box_branch_replaces_size_and_offset() -> None:
    torch.manual_seed(0)
    model = build_centernet(
        backbone="resnet18", backbone_weights=None, neck="deconv", neck_channels=[32, 32, 32],
        num_classes=3, head_conv=16, prior_prob=0.1, box="ltrb", ltrb_scale=8.0,
    ).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"heatmap": (2, 3, 16, 16), "ltrb": (2, 4, 16, 16)}
    assert (out["ltrb"] >= 0).all() and model.head.ltrb_scale == 8.0
    head_keys = {k for k in model.state_dict() if k.startswith("head.")}
    branches = ("heatmap", "ltrb")
    assert head_keys == {f"head.{b}.{i}.{p}" for b in branches for i in (0, 2) for p in ("weight", "bias")}


def test_empty_batch(model: CenterNet) -> None:
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(0, 3, 32, 64))
    assert out["heatmap"].shape == (0, 3, 8, 16)


def test_initial_heatmap_is_the_prior(model: CenterNet) -> None:
    model.eval()
    with torch.no_grad():
        heatmap = model(torch.randn(1, 3, 64, 64))["heatmap"]  # [1, 3, 16, 16]
    centre = torch.sigmoid(heatmap[0, :, 8, 8])
    torch.testing.assert_close(centre, torch.full((3,), 0.1), atol=1e-3, rtol=0)
    expected_bias = -math.log(0.9 / 0.1)
    torch.testing.assert_close(model.head.heatmap[-1].bias, torch.full((3,), expected_bias))


def test_input_size_must_be_divisible(model: CenterNet) -> None:
    with pytest.raises(ValueError, match="height 60 and width 64 must be multiples of 32"):
        model(torch.zeros(1, 3, 60, 64))
    with pytest.raises(ValueError, match=r"expected images \[B, 3, H, W\], got shape \(3, 64, 64\)"):
        model(torch.zeros(3, 64, 64))


def test_channels_last_matches_contiguous(model: CenterNet) -> None:
    model.eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        reference = model(images)
        model.to(memory_format=torch.channels_last)
        out = model(images.to(memory_format=torch.channels_last))
        model.to(memory_format=torch.contiguous_format)
    for key in reference:
        torch.testing.assert_close(out[key], reference[key], atol=1e-4, rtol=1e-4)


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(KeyError, match=r"unknown backbone 'resnet19': valid names are .*resnet18"):
        _build(backbone="resnet19")
    with pytest.raises(KeyError, match=r"unknown neck 'fpn': valid names are .*deconv"):
        build_centernet(
            backbone="resnet18",
            backbone_weights=None,
            neck="fpn",
            neck_channels=[256],
            num_classes=1,
            head_conv=64,
            prior_prob=0.1,
        )


def test_construction_checks() -> None:
    class Trunk(nn.Identity):
        out_channels = 8
        stride = 4

    with pytest.raises(ValueError, match="stride 4 is not a multiple of the neck upsample factor 8"):
        CenterNet(Trunk(), DeconvNeck(8, (8, 8, 8)), CenterNetHead(8, 1))
    with pytest.raises(ValueError, match="neck expects 16 input channels, backbone gives 8"):
        CenterNet(Trunk(), DeconvNeck(16, (8,)), CenterNetHead(8, 1))
    assert CenterNet(Trunk(), DeconvNeck(8, (8, 8)), CenterNetHead(8, 1)).output_stride == 1
    with pytest.raises(TypeError, match="the backbone \\(Identity\\) must expose a positive int attribute 'stride'"):
        CenterNet(nn.Identity(), DeconvNeck(8, (8,)), CenterNetHead(8, 1))


@pytest.mark.parametrize(("architecture", "backbone"), [("res_18", "resnet18"), ("res_101", "resnet101")])
def test_original_checkpoint_keys_map_one_to_one(architecture: str, backbone: str) -> None:
    original = json.loads(CHECKPOINT_KEYS.read_text())[architecture]
    expected = {_to_ours(k): tuple(shape) for k, shape in original.items()}
    ours = {k: tuple(v.shape) for k, v in _build(backbone, num_classes=80).state_dict().items()}
    assert ours == expected


def test_one_training_step_reduces_a_simple_loss() -> None:
    torch.manual_seed(0)
    net = _build(num_classes=2)
    net.train()
    images = torch.randn(2, 3, 64, 64)
    target_heat = torch.zeros(2, 2, 16, 16)
    target_heat[:, 0, 8, 8] = 1.0
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)

    def loss_fn() -> torch.Tensor:
        out = net(images)
        heat = nn.functional.binary_cross_entropy_with_logits(out["heatmap"], target_heat)
        return heat + (out["size"] - 3.0).abs().mean() + (out["offset"] - 0.5).abs().mean()

    before = loss_fn()
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    after = loss_fn()
    assert torch.isfinite(after)
    assert after.item() < before.item()
