"""Inference helpers: normalisation, the flip test-time merge, autocast choices."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from centernet.data.normalize import ImageNormalizer
from centernet.inference.runner import predict_maps
from centernet.utils.amp import autocast_context


class RampModel(nn.Module):
    """Not flip-equivariant on purpose: heatmap = x + column ramp, size = 2x, offset = x - ramp."""

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        ramp = torch.arange(images.shape[-1], dtype=images.dtype).view(1, 1, 1, -1)
        x = images[:, :1]
        return {
            "heatmap": x + ramp,
            "size": torch.cat([2 * x, 3 * x + ramp], 1),
            "offset": torch.cat([x - ramp] * 2, 1),
        }


def test_flip_merge_by_hand() -> None:
    images = torch.tensor([[[[0.5, -1.0, 2.0]]]]).expand(1, 3, 1, 3).contiguous()
    x = images[:, :1]
    ramp = torch.arange(3.0).view(1, 1, 1, -1)
    merged = predict_maps(RampModel(), images, flip=True)
    # the flipped pass sees x.flip and its outputs are flipped back: ramp appears reversed
    expected_heat = (torch.sigmoid(x + ramp) + torch.sigmoid(x + ramp.flip(-1))) / 2
    assert torch.allclose(torch.sigmoid(merged["heatmap"]), expected_heat, atol=1e-6)
    expected_size = torch.cat([2 * x, 3 * x + (ramp + ramp.flip(-1)) / 2], 1)
    assert torch.allclose(merged["size"], expected_size, atol=1e-6)
    assert torch.allclose(merged["offset"], torch.cat([x - ramp] * 2, 1))  # from the un-flipped pass only


def test_flip_merge_on_a_symmetric_input_with_an_equivariant_model_changes_nothing() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_((conv.weight + conv.weight.flip(-1)) / 2)  # mirror-symmetric kernels

    class Equivariant(nn.Module):
        def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
            y = conv(images)
            return {"heatmap": y[:, :1], "size": y[:, 1:3], "offset": y[:, 3:5]}

    half = torch.randn(1, 3, 4, 3)
    images = torch.cat([half, half.flip(-1)], -1)  # symmetric image
    plain = predict_maps(Equivariant(), images)
    merged = predict_maps(Equivariant(), images, flip=True)
    for key in ("heatmap", "size", "offset"):
        assert torch.allclose(plain[key], merged[key], atol=1e-5), key


def test_normalizer_by_hand() -> None:
    normalizer = ImageNormalizer([0.5, 0.25, 0.0], [0.5, 0.25, 1.0])
    images = torch.tensor([0, 255, 51], dtype=torch.uint8).view(1, 3, 1, 1)
    out = normalizer(images)
    assert torch.allclose(out.flatten(), torch.tensor([-1.0, 3.0, 0.2]), atol=1e-6)
    assert normalizer(torch.zeros(0, 3, 2, 2, dtype=torch.uint8)).shape == (0, 3, 2, 2)


def test_fp16_on_cpu_is_refused() -> None:
    with pytest.raises(ValueError, match=r"runtime\.amp=fp16 needs a CUDA device"):
        autocast_context(torch.device("cpu"), "fp16")
    with autocast_context(torch.device("cpu"), "off"):
        pass
