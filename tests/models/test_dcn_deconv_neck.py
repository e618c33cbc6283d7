"""Tests for the ResDCN neck (``dcn_deconv``) and its bilinear initialisation in centernet.models.necks."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from centernet.models import NECKS, build_centernet
from centernet.models.dcn import DeformConv
from centernet.models.necks import DcnDeconvNeck, bilinear_kernel, fill_up_weights
from tests.conftest import CHECKPOINT_KEYS_PATH

STAGE_MODULES = (DeformConv, nn.BatchNorm2d, nn.ReLU, nn.ConvTranspose2d, nn.BatchNorm2d, nn.ReLU)


def test_shapes_and_attributes() -> None:
    neck = DcnDeconvNeck(8, (6, 5, 4))
    assert neck.out_channels == 4
    assert neck.upsample_factor == 8
    assert neck.in_channels == 8
    assert neck([torch.randn(2, 8, 2, 3)]).shape == (2, 4, 16, 24)
    assert DcnDeconvNeck(6, (3,))([torch.randn(1, 6, 5, 7)]).shape == (1, 3, 10, 14)
    built = NECKS["dcn_deconv"](feature_channels=(4, 6, 8, 10), channels=(5, 3))
    assert isinstance(built, DcnDeconvNeck)
    assert (built.in_channels, built.out_channels, built.upsample_factor) == (10, 3, 4)
    # only the last map is read
    assert built([torch.randn(1, 4, 16, 16), torch.randn(1, 10, 2, 2)]).shape == (1, 3, 8, 8)


def test_defaults_are_the_original() -> None:
    neck = NECKS["dcn_deconv"](feature_channels=(64, 128, 256, 512))
    assert (neck.out_channels, neck.upsample_factor) == (64, 8)


def test_empty_batch_and_invalid_arguments() -> None:
    assert DcnDeconvNeck(4, (2, 2)).eval()([torch.zeros(0, 4, 3, 3)]).shape == (0, 2, 12, 12)
    with pytest.raises(ValueError, match="dcn_deconv neck: channels is empty"):
        DcnDeconvNeck(4, ())
    with pytest.raises(ValueError, match="must be positive"):
        DcnDeconvNeck(4, (2, 0))
    with pytest.raises(ValueError, match="size must be >= 1, got 0"):
        bilinear_kernel(0)
    with pytest.raises(ValueError, match="square kernel"):
        fill_up_weights(nn.ConvTranspose2d(2, 2, (4, 2)))


def test_layer_structure_is_the_original() -> None:
    neck = DcnDeconvNeck(512)
    layers = list(neck.layers)
    assert len(layers) == 18
    for stage in range(3):
        modules = layers[6 * stage : 6 * stage + 6]
        assert [type(m) for m in modules] == list(STAGE_MODULES)
        dcn, up = modules[0], modules[3]
        assert dcn.kernel_size == (3, 3) and dcn.padding == (1, 1) and dcn.stride == (1, 1)
        assert up.kernel_size == (4, 4) and up.stride == (2, 2) and up.padding == (1, 1)
        assert up.output_padding == (0, 0) and up.bias is None
        assert up.in_channels == up.out_channels == dcn.out_channels


@pytest.mark.parametrize("architecture", ["resdcn_18", "resdcn_101"])
def test_keys_match_the_original_checkpoint(architecture: str) -> None:
    original = json.loads(CHECKPOINT_KEYS_PATH.read_text())[architecture]
    expected = {
        k.replace("deconv_layers.", "layers.", 1): tuple(shape)
        for k, shape in original.items()
        if k.startswith("deconv_layers.")
    }
    in_channels = original["deconv_layers.0.weight"][1]
    assert {k: tuple(v.shape) for k, v in DcnDeconvNeck(in_channels).state_dict().items()} == expected


def test_bilinear_kernel_hand_computed() -> None:
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 4
    expected = torch.outer(taps, taps)
    assert torch.allclose(expected[0], torch.tensor([1.0, 3.0, 3.0, 1.0]) / 16)
    assert torch.allclose(bilinear_kernel(4), expected)
    # size 2, stride 2 is nearest-neighbour copying into the top-left tap
    assert torch.equal(bilinear_kernel(2), torch.tensor([[1.0, 0.0], [0.0, 0.0]]))


def test_fill_up_weights_sets_output_channel_zero_only() -> None:
    torch.manual_seed(0)
    up = nn.ConvTranspose2d(3, 5, 4, stride=2, padding=1, bias=False)
    before = up.weight.detach().clone()  # [in 3, out 5, 4, 4]
    fill_up_weights(up)
    for c in range(3):
        assert torch.allclose(up.weight[c, 0], bilinear_kernel(4))
    assert torch.equal(up.weight[:, 1:], before[:, 1:])


def test_initialisation() -> None:
    torch.manual_seed(0)
    neck = DcnDeconvNeck(16, (8, 4))
    for index in (0, 6):
        dcn = neck.layers[index]
        assert torch.equal(dcn.conv_offset_mask.weight, torch.zeros_like(dcn.conv_offset_mask.weight))
        assert torch.equal(dcn.bias, torch.zeros_like(dcn.bias))
    for index in (3, 9):
        up = neck.layers[index]
        assert torch.allclose(up.weight[:, 0], bilinear_kernel(4).expand_as(up.weight[:, 0]))
    for index in (1, 4, 7, 10):
        bn = neck.layers[index]
        assert torch.equal(bn.weight, torch.ones_like(bn.weight))
        assert torch.equal(bn.bias, torch.zeros_like(bn.bias))


def test_upsampling_a_constant_map_hand_computed() -> None:
    channels, value = 3, 2.0
    up = DcnDeconvNeck(4, (channels,)).layers[3]
    out = up(torch.full((1, channels, 4, 5), value)).detach()  # [1, 3, 8, 10]
    # output channel 0 is the bilinear upsampling of the channel sum: per axis the two taps reaching an
    # interior pixel weigh 1/4 + 3/4 = 1; a border pixel is reached by the 3/4 tap only
    total = channels * value
    assert torch.allclose(out[0, 0, 1:-1, 1:-1], torch.full((6, 8), total))
    assert torch.allclose(out[0, 0, 0, 0], torch.tensor(total * 0.75**2))
    assert torch.allclose(out[0, 0, 0, 1:-1], torch.full((8,), total * 0.75))


def test_a_fresh_stage_is_half_a_plain_conv_then_bilinear_upsampling() -> None:
    torch.manual_seed(0)
    neck = DcnDeconvNeck(2, (1,)).eval()  # one output channel: the up layer is exactly bilinear
    x = torch.randn(1, 2, 3, 3)
    dcn, up = neck.layers[0], neck.layers[3]
    conv = 0.5 * nn.functional.conv2d(x, dcn.weight, padding=1) + dcn.bias.view(1, -1, 1, 1)  # mask 0.5
    bn_scale = 1.0 / (1.0 + neck.layers[1].eps) ** 0.5  # fresh running stats: mean 0, var 1
    hidden = torch.relu(conv * bn_scale)
    expected = torch.relu(nn.functional.conv_transpose2d(hidden, up.weight, stride=2, padding=1) * bn_scale)
    assert torch.allclose(neck([x]), expected, atol=1e-6)


def test_one_training_step_on_cpu() -> None:
    torch.manual_seed(0)
    net = build_centernet(
        backbone="resnet18",
        backbone_weights=None,
        neck="dcn_deconv",
        neck_channels=(16, 8, 8),
        num_classes=2,
        head_conv=8,
        prior_prob=0.1,
    )
    net.train()
    images = torch.randn(2, 3, 64, 64)
    target = torch.zeros(2, 2, 16, 16)
    target[:, 0, 8, 8] = 1.0
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)

    def loss_fn() -> torch.Tensor:
        out = net(images)
        assert out["heatmap"].shape == (2, 2, 16, 16)
        heat = nn.functional.binary_cross_entropy_with_logits(out["heatmap"], target)
        return heat + (out["size"] - 3.0).abs().mean()

    before = loss_fn()
    optimizer.zero_grad()
    before.backward()
    offset_grad = net.neck.layers[0].conv_offset_mask.weight.grad
    assert offset_grad is not None and offset_grad.abs().sum() > 0
    optimizer.step()
    after = loss_fn()
    assert torch.isfinite(after)
    assert after.item() < before.item()
