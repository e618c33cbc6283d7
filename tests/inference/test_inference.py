"""Inference helpers: normalisation, the flip test-time merge, autocast choices."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from centernet.data.normalize import ImageNormalizer
from centernet.inference.runner import decode_predicted, map_stride, predict_maps
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


class ExactLtrbModel(nn.Module):
    """Stride 4: every cell predicts the exact distances to the sides of the bright pixels' box, whose
    corners are the first and last bright pixel indices (the convention the mirror u -> W - 1 - u keeps)."""

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        batch, _, height, width = images.shape
        ys, xs = torch.meshgrid(torch.arange(height // 4) * 4.0, torch.arange(width // 4) * 4.0, indexing="ij")
        heat = torch.full((batch, 1, height // 4, width // 4), -5.0)
        ltrb = torch.zeros(batch, 4, height // 4, width // 4)
        for i in range(batch):
            bright = images[i, 0] > 0.5
            cols, rows = bright.any(0).nonzero()[:, 0].float(), bright.any(1).nonzero()[:, 0].float()
            x1, x2, y1, y2 = cols.min(), cols.max(), rows.min(), rows.max()
            ltrb[i] = torch.stack((xs - x1, ys - y1, x2 - xs, y2 - ys))
            heat[i, 0, int((y1 + y2) / 8), int((x1 + x2) / 8)] = 3.0
        return {"heatmap": heat, "ltrb": ltrb}


def test_flip_merge_of_an_exact_ltrb_model_keeps_its_boxes() -> None:
    images = torch.zeros(1, 3, 32, 48)
    images[0, :, 6:19, 9:30] = 1.0  # bright pixels x 9..29, y 6..18
    plain = predict_maps(ExactLtrbModel(), images)
    merged = predict_maps(ExactLtrbModel(), images, flip=True)
    assert set(merged) == {"heatmap", "ltrb"}
    torch.testing.assert_close(merged["ltrb"], plain["ltrb"])
    top = decode_predicted(images, merged, k=1)[0, 0]
    # peak cell (x=4, y=3) on the stride-4 grid; decoded on the output grid = input pixels / 4
    torch.testing.assert_close(top[:4] * 4, torch.tensor([9.0, 6.0, 29.0, 18.0]))
    assert map_stride(images, merged["heatmap"]) == 4


def test_map_stride_needs_a_whole_multiple() -> None:
    with pytest.raises(ValueError, match="whole multiple"):
        map_stride(torch.zeros(1, 3, 30, 48), torch.zeros(1, 1, 8, 12))
