"""Tests for centernet.decode: peak keep, top-K decoding and the inverse affine post-process."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from centernet.decode import batch_detections_to_image, decode_detections, detections_to_image
from centernet.targets import render_targets
from centernet.utils.affine import apply_affine_to_boxes, get_affine_transform

LOGIT_CLAMP = 1e-4  # probability clamp used to turn rendered heatmaps into finite fake logits


def _fake_predictions(targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Head outputs that encode the targets perfectly: logit(heatmap), size/offset at the peaks."""
    heat = targets["heatmap"]
    batch, _, height, width = heat.shape
    logits = torch.logit(heat.clamp(LOGIT_CLAMP, 1 - LOGIT_CLAMP))
    maps = []
    for name in ("size", "offset"):
        flat = torch.zeros(batch, 2, height * width)
        keep = targets["mask"].bool()  # [B, M]
        for b in range(batch):
            flat[b][:, targets["index"][b][keep[b]]] = targets[name][b][keep[b]].T
        maps.append(flat.view(batch, 2, height, width))
    return logits, maps[0], maps[1]


# ---------------------------------------------------------------- decode


def test_hand_computed_peaks():
    logits = torch.full((1, 2, 4, 5), -10.0)
    logits[0, 1, 1, 3] = 2.0  # class 1 peak at (x=3, y=1)
    logits[0, 1, 1, 2] = 1.0  # its neighbour: suppressed by the 3x3 max-pool
    logits[0, 0, 3, 0] = 0.0  # class 0 peak at (x=0, y=3), score 0.5
    size = torch.ones(1, 2, 4, 5)
    size[0, :, 1, 3] = torch.tensor([2.0, 4.0])
    offset = torch.zeros(1, 2, 4, 5)
    offset[0, :, 1, 3] = torch.tensor([0.25, 0.5])
    dets = decode_detections(logits, size, offset, k=2)
    sig2 = 1 / (1 + math.exp(-2.0))
    expected = [[2.25, -0.5, 4.25, 3.5, sig2, 1.0], [-0.5, 2.5, 0.5, 3.5, 0.5, 0.0]]
    np.testing.assert_allclose(dets[0].numpy(), expected, rtol=0, atol=1e-6)
    assert dets.dtype == torch.float32


def test_k_larger_than_the_map_is_clamped():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 4, 5, generator=gen)
    size, offset = torch.rand(2, 2, 4, 5, generator=gen), torch.rand(2, 2, 4, 5, generator=gen)
    dets = decode_detections(logits, size, offset, k=1000)
    assert dets.shape == (2, 3 * 4 * 5, 6)
    scores = dets[..., 4]
    assert torch.all(scores[:, :-1] >= scores[:, 1:])  # best first
    kept = decode_detections(logits, size, offset, k=7)
    assert torch.equal(kept[..., 4], scores[:, :7])
    # The non-zero scores are exactly the peaks of the sigmoid map.
    heat = logits.sigmoid()
    peaks = heat == torch.nn.functional.max_pool2d(heat, 3, stride=1, padding=1)
    assert torch.equal((scores > 0).sum(1), peaks.flatten(1).sum(1))


def test_empty_inputs():
    none = decode_detections(torch.zeros(0, 3, 4, 4), torch.zeros(0, 2, 4, 4), torch.zeros(0, 2, 4, 4))
    assert none.shape == (0, 48, 6)
    assert decode_detections(torch.zeros(2, 3, 4, 4), torch.zeros(2, 2, 4, 4), torch.zeros(2, 2, 4, 4), k=0).shape == (
        2,
        0,
        6,
    )
    assert detections_to_image(np.zeros((0, 6)), (5, 5), 10, (4, 4)).shape == (0, 6)
    assert batch_detections_to_image(np.zeros((0, 3, 6)), [], [], (4, 4)).shape == (0, 3, 6)


def test_shape_errors():
    with pytest.raises(ValueError, match=r"size must be \(1, 2, 4, 4\)"):
        decode_detections(torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 4, 5), torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match="k must be >= 0"):
        decode_detections(torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4), k=-1)


def test_works_under_inference_mode_and_half_precision():
    logits, size, offset = torch.randn(1, 2, 6, 6), torch.rand(1, 2, 6, 6), torch.rand(1, 2, 6, 6)
    expected = decode_detections(logits, size, offset, k=5)
    with torch.inference_mode():
        got = decode_detections(logits, size, offset, k=5)
    assert torch.equal(got, expected)
    half = decode_detections(logits.half(), size.half(), offset.half(), k=5)
    assert half.dtype == torch.float32


def test_golden_decode_matches_original(golden):
    dets = decode_detections(
        torch.from_numpy(golden["d_heat_logits"]),
        torch.from_numpy(golden["d_size"]),
        torch.from_numpy(golden["d_offset"]),
        k=100,
    )
    np.testing.assert_allclose(dets.numpy(), golden["d_dets"], rtol=0, atol=1e-4)
    height, width = (int(v) for v in golden["d_image_hw"])
    output = golden["d_heat_logits"].shape[-2:]
    image_dets = detections_to_image(dets[0], (width / 2.0, height / 2.0), float(max(height, width)), output)
    grouped = image_dets[np.argsort(image_dets[:, 5], kind="stable")]  # class 0 first, score order inside
    np.testing.assert_allclose(grouped, golden["d_image_dets"], rtol=0, atol=1e-4)


# ---------------------------------------------------------------- inverse affine


def test_detections_to_image_hand_computed():
    # Image 100x200 (H x W): c = (100, 50), s = 200; output 32 x 64 (H x W): 0.32 grid px per image px,
    # centre -> (32, 16). Inverse: x = (x' - 32) / 0.32 + 100, y = (y' - 16) / 0.32 + 50.
    dets = np.array([[32.0, 16.0, 48.0, 24.0, 0.9, 3.0]], dtype=np.float32)
    got = detections_to_image(torch.from_numpy(dets), (100.0, 50.0), 200.0, (32, 64))
    np.testing.assert_allclose(got, [[100.0, 50.0, 150.0, 75.0, 0.9, 3.0]], rtol=0, atol=1e-4)
    assert got.dtype == np.float32 and dets[0, 0] == 32.0  # input untouched
    batch = batch_detections_to_image(np.stack([dets, dets]), [(100.0, 50.0), (0.0, 0.0)], [200.0, 100.0], (32, 64))
    np.testing.assert_array_equal(batch[0], got)
    np.testing.assert_array_equal(batch[1], detections_to_image(dets, (0.0, 0.0), 100.0, (32, 64)))
    with pytest.raises(ValueError, match="2 images but 1 centers"):
        batch_detections_to_image(np.stack([dets, dets]), [(0.0, 0.0)], [1.0, 2.0], (32, 64))


# ---------------------------------------------------------------- round trips


def test_round_trip_render_then_decode():
    boxes = torch.tensor(
        [
            [[2.0, 3.0, 10.5, 9.25], [20.0, 18.0, 30.0, 31.0], [-4.0, 22.0, 6.0, 40.0], [0.0, 0.0, 0.0, 0.0]],
            [[12.0, 1.5, 22.0, 11.0], [3.0, 16.0, 9.0, 28.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],
        ]
    )
    labels = torch.tensor([[0, 2, 1, -1], [1, 1, -1, -1]])
    valid = labels >= 0
    targets = render_targets(boxes, labels, valid, num_classes=3, output_size=(32, 32))
    dets = decode_detections(*_fake_predictions(targets), k=6)
    clipped = boxes.clamp(0, 31)
    for b, count in enumerate(valid.sum(1).tolist()):
        top = dets[b, :count]
        assert torch.all(top[:, 4] > 1 - 2 * LOGIT_CLAMP)
        assert torch.all(dets[b, count:, 4] <= LOGIT_CLAMP + 1e-6)  # nothing else looks like an object
        got = sorted(top[:, [5, 0, 1, 2, 3]].tolist())
        expected = sorted(torch.cat((labels[b, :count, None].float(), clipped[b, :count]), 1).tolist())
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_round_trip_image_to_grid_and_back():
    height, width, output = 300, 500, 64
    center, scale = np.array([width / 2.0, height / 2.0], dtype=np.float32), float(max(height, width))
    image_boxes = np.array([[40.0, 60.0, 180.0, 200.0], [300.0, 20.0, 460.0, 150.0]], dtype=np.float32)
    grid = apply_affine_to_boxes(image_boxes, get_affine_transform(center, scale, (output, output)))
    targets = render_targets(
        torch.from_numpy(grid)[None],
        torch.tensor([[0, 1]]),
        torch.ones(1, 2, dtype=bool),
        num_classes=2,
        output_size=(output, output),
    )
    dets = decode_detections(*_fake_predictions(targets), k=2)[0]
    back = detections_to_image(dets, center, scale, (output, output))
    back = back[np.argsort(back[:, 5])]
    np.testing.assert_allclose(back[:, :4], image_boxes, rtol=0, atol=1e-3)
