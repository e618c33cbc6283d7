"""Tests for the ltrb (TTFNet) side of centernet.decode: decoding, dispatch by keys and the flip merge."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from centernet.data.transforms import flip_boxes
from centernet.decode import GraphDecoder, decode_detections, decode_ltrb_detections, decode_maps, unflip_ltrb
from centernet.targets import render_ttf_targets
from tests.losses.test_giou import perfect_ltrb

DOWN = 4
LOGIT_CLAMP = 1e-4  # probability clamp turning rendered heatmaps into finite fake logits


def test_hand_computed_box_of_one_peak():
    logits = torch.full((1, 1, 2, 3), -5.0)
    logits[0, 0, 1, 2] = 3.0
    ltrb = torch.zeros(1, 4, 2, 3)
    ltrb[0, :, 1, 2] = torch.tensor([4.0, 8.0, 2.0, 6.0])
    det = decode_ltrb_detections(logits, ltrb, down_ratio=DOWN, k=1)
    # peak cell (x 2, y 1); on the grid: [2 - 4/4, 1 - 8/4, 2 + 2/4, 1 + 6/4]
    expected = [1.0, -1.0, 2.5, 2.5, float(torch.sigmoid(torch.tensor(3.0))), 0.0]
    np.testing.assert_allclose(det[0, 0].numpy(), expected, rtol=1e-6)


def _round_trip_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    # Two images, three classes; each box's centre cell regresses that box (no smaller box covers it).
    boxes = torch.tensor(
        [
            [[4.0, 4.0, 60.0, 60.0], [36.0, 36.0, 52.0, 52.0], [70.0, 10.0, 120.0, 40.0]],
            [[10.0, 80.0, 50.0, 126.0], [64.0, 64.0, 127.0, 100.0], [0.0, 0.0, 0.0, 0.0]],
        ]
    )
    labels = torch.tensor([[0, 1, 2], [2, 0, -1]])
    valid = labels >= 0
    targets = render_ttf_targets(boxes, labels, valid, num_classes=3, output_size=(32, 32), down_ratio=DOWN)
    logits = torch.logit(targets["heatmap"].clamp(LOGIT_CLAMP, 1 - LOGIT_CLAMP))
    return boxes, labels, valid, {"heatmap": logits, "ltrb": perfect_ltrb(targets["box_target"], DOWN)}


def test_round_trip_render_then_decode():
    boxes, labels, valid, maps = _round_trip_case()
    dets = decode_ltrb_detections(maps["heatmap"], maps["ltrb"], down_ratio=DOWN, k=3)
    for image in range(2):
        found = {int(row[5]): row[:4].tolist() for row in dets[image] if row[4] > 0.99}
        expected = {int(labels[image, m]): (boxes[image, m] / DOWN).tolist() for m in range(3) if valid[image, m]}
        assert found.keys() == expected.keys()
        for label, box in expected.items():
            np.testing.assert_allclose(found[label], box, atol=1e-5)


def test_round_trip_render_then_graph_decode():
    boxes, labels, valid, maps = _round_trip_case()
    graph_boxes, scores, classes = GraphDecoder(k=3, output_stride=DOWN).decode_maps(maps)  # input pixels
    for image in range(2):
        found = {int(c): b.tolist() for b, s, c in zip(graph_boxes[image], scores[image], classes[image]) if s > 0.99}
        expected = {int(labels[image, m]): boxes[image, m].tolist() for m in range(3) if valid[image, m]}
        assert found.keys() == expected.keys()
        for label, box in expected.items():
            np.testing.assert_allclose(found[label], box, atol=1e-4)


def test_decode_maps_picks_the_decoder_by_keys():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=gen)
    ltrb = torch.rand(2, 4, 8, 8, generator=gen) * 20
    size, offset = torch.rand(2, 2, 8, 8, generator=gen), torch.rand(2, 2, 8, 8, generator=gen)
    assert torch.equal(
        decode_maps({"heatmap": logits, "ltrb": ltrb}, down_ratio=DOWN, k=5),
        decode_ltrb_detections(logits, ltrb, down_ratio=DOWN, k=5),
    )
    assert torch.equal(
        decode_maps({"heatmap": logits, "size": size, "offset": offset}, down_ratio=DOWN, k=5),
        decode_detections(logits, size, offset, k=5),
    )
    # The peaks (scores, classes) do not depend on the box branch.
    same = decode_ltrb_detections(logits, ltrb, down_ratio=DOWN, k=5)[..., 4:]
    assert torch.equal(same, decode_detections(logits, size, offset, k=5)[..., 4:])


def test_unflip_ltrb_matches_the_unmirrored_distances():
    # Width 8 cells = 32 input pixels; the mirror is u -> 31 - u (pixel-index boxes).
    box = np.array([[2.0, 3.0, 19.0, 21.0]], dtype=np.float32)
    mirrored = flip_boxes(box, 32)
    assert mirrored.tolist() == [[12.0, 3.0, 29.0, 21.0]]
    everywhere = torch.ones(1, 1, 6, 8)
    direct = perfect_ltrb(torch.from_numpy(box).view(1, 4, 1, 1) * everywhere, DOWN)
    flipped = perfect_ltrb(torch.from_numpy(mirrored).view(1, 4, 1, 1) * everywhere, DOWN)
    torch.testing.assert_close(unflip_ltrb(flipped, down_ratio=DOWN), direct)
    # Cell x' = 1 of the mirrored map (pixel 4): l' = 4 - 12 = -8, r' = 29 - 4 = 25; it is cell x = 6
    # (pixel 24) of the original: l = r' - 3 = 22 = 24 - 2, r = l' + 3 = -5 = 19 - 24.
    assert unflip_ltrb(flipped, down_ratio=DOWN)[0, :, 0, 6].tolist() == [22.0, -3.0, -5.0, 21.0]


def test_ltrb_shape_and_argument_errors():
    logits = torch.zeros(1, 2, 4, 4)
    with pytest.raises(ValueError, match=r"decode_ltrb_detections: ltrb must be \(1, 4, 4, 4\), got \(1, 2, 4, 4\)"):
        decode_ltrb_detections(logits, torch.zeros(1, 2, 4, 4), down_ratio=DOWN)
    with pytest.raises(ValueError, match=r"decode_ltrb_detections: down_ratio must be positive, got 0"):
        decode_ltrb_detections(logits, torch.zeros(1, 4, 4, 4), down_ratio=0)
    with pytest.raises(ValueError, match=r"decode_ltrb_detections: k must be >= 0, got -1"):
        decode_ltrb_detections(logits, torch.zeros(1, 4, 4, 4), down_ratio=DOWN, k=-1)
