"""Tests for the ida_up neck (the original DLA-34 DLAUp + IDAUp, centernet/models/ida_up.py)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from centernet.models import NECKS
from centernet.models.backbones.dla import DLA34_CHANNELS
from centernet.models.dcn import DeformConv
from centernet.models.ida_up import IdaUpNeck
from centernet.models.necks import bilinear_kernel
from tests.conftest import CHECKPOINT_KEYS_PATH

SIZE = 32


def _maps(batch: int = 2) -> list[torch.Tensor]:
    """Random maps shaped like DLA-34's at SIZE px (strides 1..32)."""
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(batch, c, SIZE >> i, SIZE >> i, generator=generator) for i, c in enumerate(DLA34_CHANNELS)]


@pytest.mark.parametrize(
    ("channels", "stride"),
    [((32, 64, 128, 256, 512), 2), ((64, 128, 256, 512), 4), ((128, 256, 512), 8), ((256, 512), 16)],
)
def test_output_stride_follows_the_number_of_levels(channels: tuple[int, ...], stride: int) -> None:
    neck = NECKS["ida_up"](feature_channels=DLA34_CHANNELS, channels=channels)
    out = neck(_maps())
    assert tuple(out.shape) == (2, channels[0], SIZE // stride, SIZE // stride)
    assert neck.upsample_factor == 32 // stride
    assert (neck.in_channels, neck.out_channels) == (512, channels[0])


def test_parameters_are_the_original_dla_up_and_ida_up() -> None:
    original = json.loads(CHECKPOINT_KEYS_PATH.read_text())["dla_34"]
    expected = {k: tuple(v) for k, v in original.items() if k.startswith(("dla_up.", "ida_up."))}
    neck = IdaUpNeck(DLA34_CHANNELS, (64, 128, 256, 512))
    assert {k: tuple(v.shape) for k, v in neck.state_dict().items()} == expected


def test_upsampling_is_depthwise_bilinear() -> None:
    neck = IdaUpNeck(DLA34_CHANNELS, (64, 128, 256, 512))
    ups = {name: m for name, m in neck.named_modules() if isinstance(m, nn.ConvTranspose2d)}
    assert set(ups) == {"dla_up.ida_0.up_1", "dla_up.ida_1.up_1", "dla_up.ida_1.up_2", "dla_up.ida_2.up_1"} | {
        "dla_up.ida_2.up_2",
        "dla_up.ida_2.up_3",
        "ida_up.up_1",
        "ida_up.up_2",
    }
    assert ups["ida_up.up_2"].stride == (4, 4) and ups["ida_up.up_2"].kernel_size == (8, 8)
    for up in ups.values():
        assert up.groups == up.in_channels == up.out_channels
        kernel = bilinear_kernel(up.kernel_size[0])
        assert torch.equal(up.weight, kernel.expand_as(up.weight))
    # hand-computed: [1, 3, 3, 1] / 4 taps per axis, so a constant map stays constant away from the border
    up = ups["dla_up.ida_0.up_1"]
    out = up(torch.ones(1, up.in_channels, 4, 4))  # [1, C, 8, 8]
    assert torch.allclose(out[..., 1:-1, 1:-1], torch.ones(()))
    assert torch.allclose(out[..., 0, 0], torch.full((), 0.75 * 0.75))


def test_fresh_deformable_convs_sample_the_regular_grid() -> None:
    neck = IdaUpNeck(DLA34_CHANNELS, (64, 128, 256, 512))
    dcns = [m for m in neck.modules() if isinstance(m, DeformConv)]
    assert len(dcns) == 16  # proj + node per merge: 1 + 2 + 3 (dla_up) + 2 (ida_up) merges
    assert all(torch.count_nonzero(m.conv_offset_mask.weight) == 0 for m in dcns)


def test_gradient_reaches_every_level_and_parameter() -> None:
    neck = IdaUpNeck(DLA34_CHANNELS, (64, 128, 256, 512))
    maps = [m.requires_grad_() for m in _maps()]
    neck(maps).square().mean().backward()
    assert [m.grad is not None for m in maps] == [False, False, True, True, True, True]
    assert all(p.grad is not None for p in neck.parameters())


@pytest.mark.parametrize("channels", [(64,), (512,), (64, 128, 256), (32, 128, 256, 512), ()])
def test_channels_must_be_the_backbone_tail(channels: tuple[int, ...]) -> None:
    with pytest.raises(
        ValueError,
        match=r"ida_up neck: channels .* must be the backbone's last levels.*\[64, 128, 256, 512\] \(upsampling x8\)",
    ):
        IdaUpNeck(DLA34_CHANNELS, channels)
