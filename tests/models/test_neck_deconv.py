"""Tests for centernet.models.necks (the original deconvolution neck)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from centernet.models.necks import DeconvNeck, LateralDeconvNeck
from tests.conftest import CHECKPOINT_KEYS_PATH

CHECKPOINT_KEYS = CHECKPOINT_KEYS_PATH
BN_EPS = 1e-5


def test_shapes_and_attributes() -> None:
    neck = DeconvNeck(8, (4, 5, 6))
    assert neck.out_channels == 6
    assert neck.upsample_factor == 8
    assert neck([torch.randn(2, 8, 2, 3)]).shape == (2, 6, 16, 24)
    assert DeconvNeck(512).upsample_factor == 8
    assert DeconvNeck(512).out_channels == 256


@pytest.mark.parametrize("kernel_size", [2, 3, 4])
def test_every_kernel_size_doubles_exactly(kernel_size: int) -> None:
    neck = DeconvNeck(3, (2,), kernel_size=kernel_size)
    assert neck([torch.randn(1, 3, 5, 7)]).shape == (1, 2, 10, 14)


def test_empty_batch_and_invalid_arguments() -> None:
    assert DeconvNeck(4, (2, 2)).eval()([torch.zeros(0, 4, 3, 3)]).shape == (0, 2, 12, 12)
    with pytest.raises(ValueError, match="channels is empty"):
        DeconvNeck(4, ())
    with pytest.raises(ValueError, match="kernel_size 5 is not supported, valid are \\[2, 3, 4\\]"):
        DeconvNeck(4, (2,), kernel_size=5)
    with pytest.raises(ValueError, match="must be positive"):
        DeconvNeck(4, (2, 0))


def test_layer_structure_is_the_original() -> None:
    neck = DeconvNeck(512)
    layers = list(neck.layers)
    assert len(layers) == 9
    for i in range(3):
        deconv, bn, relu = layers[3 * i : 3 * i + 3]
        assert isinstance(deconv, nn.ConvTranspose2d)
        assert deconv.kernel_size == (4, 4)
        assert deconv.stride == (2, 2)
        assert deconv.padding == (1, 1)
        assert deconv.output_padding == (0, 0)
        assert deconv.bias is None
        assert isinstance(bn, nn.BatchNorm2d)
        assert isinstance(relu, nn.ReLU)


def test_keys_match_the_original_checkpoint() -> None:
    original = json.loads(CHECKPOINT_KEYS.read_text())["res_18"]
    expected = {
        k.replace("deconv_layers.", "layers.", 1): tuple(shape)
        for k, shape in original.items()
        if k.startswith("deconv_layers.")
    }
    assert {k: tuple(v.shape) for k, v in DeconvNeck(512).state_dict().items()} == expected


def test_initialisation() -> None:
    torch.manual_seed(0)
    neck = DeconvNeck(512)
    weight = neck.layers[0].weight
    assert abs(weight.std().item() - 0.001) < 0.00005
    assert abs(weight.mean().item()) < 0.00005
    for bn in (neck.layers[1], neck.layers[4], neck.layers[7]):
        assert torch.equal(bn.weight, torch.ones_like(bn.weight))
        assert torch.equal(bn.bias, torch.zeros_like(bn.bias))


def test_hand_computed_single_layer() -> None:
    # A 1x1 input through ConvTranspose2d(k=4, s=2, p=1): the 2x2 output is x * kernel[1:3, 1:3].
    neck = DeconvNeck(1, (1,)).eval()  # BN eval: (y - 0) / sqrt(1 + eps) * 1 + 0
    kernel = torch.arange(16, dtype=torch.float32).reshape(4, 4) - 7.5
    with torch.no_grad():
        neck.layers[0].weight.copy_(kernel.view(1, 1, 4, 4))
    out = neck([torch.full((1, 1, 1, 1), 2.0)])
    # kernel[1:3, 1:3] = [[-2.5, -1.5], [1.5, 2.5]]; times 2, ReLU, BN scale
    expected = torch.tensor([[0.0, 0.0], [3.0, 5.0]]) / (1.0 + BN_EPS) ** 0.5
    torch.testing.assert_close(out[0, 0], expected)


def test_lateral_neck_shapes_and_skip_connections() -> None:
    torch.manual_seed(0)
    neck = LateralDeconvNeck((4, 6, 8, 10), (5, 3, 2)).eval()
    maps = [torch.randn(2, c, 16 // 2**i, 16 // 2**i) for i, c in enumerate((4, 6, 8, 10))]
    assert neck(maps).shape == (2, 2, 16, 16)
    assert (neck.out_channels, neck.upsample_factor) == (2, 8)
    # the projections read the stride-16, -8 and -4 maps, in that order
    assert [lateral[0].in_channels for lateral in neck.laterals] == [8, 6, 4]
    # with zeroed skip projections the neck is exactly the plain deconv neck with the same weights
    plain = DeconvNeck(10, (5, 3, 2)).eval()
    plain.load_state_dict({k: v for k, v in neck.state_dict().items() if k.startswith("layers.")})
    for lateral in neck.laterals:
        torch.nn.init.zeros_(lateral[0].weight)
    assert torch.allclose(neck(maps), plain(maps))


def test_lateral_neck_hand_computed() -> None:
    # one 1x1 stage: deconv of a single pixel, BN in eval (identity), skip projection adds 3 * skip value
    neck = LateralDeconvNeck((1, 1), (1,), kernel_size=2).eval()
    torch.nn.init.ones_(neck.layers[0].weight)  # 2x2 kernel of ones: each output cell = input value
    torch.nn.init.constant_(neck.laterals[0][0].weight, 3.0)
    skip = torch.tensor([[[[1.0, -1.0], [0.0, 2.0]]]])
    out = neck([skip, torch.full((1, 1, 1, 1), 2.0)])
    eps = neck.layers[1].eps
    expected = torch.relu((2.0 + 3.0 * skip) / (1 + eps) ** 0.5)
    assert torch.allclose(out, expected)


def test_lateral_neck_needs_enough_backbone_maps() -> None:
    with pytest.raises(ValueError, match="3 layers need 4 backbone maps, the backbone gives 3"):
        LateralDeconvNeck((4, 6, 8), (5, 3, 2))
