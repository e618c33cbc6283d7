"""Test-time augmentation: soft-NMS / NMS merge by hand, scaled inputs, multi-scale on a hand-made model."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from centernet.data.normalize import ImageNormalizer
from centernet.data.transforms import ValTransform
from centernet.inference.merge import MergeSettings, merge_detections, soft_nms_gaussian
from centernet.inference.predictor import Detector
from centernet.inference.tta import (
    MultiScalePredictor,
    TestTimeAugmentation,
    padded_size,
    prepare_scaled_input,
    scaled_detections_to_image,
)
from centernet.models.build import build_model
from centernet.utils.affine import apply_affine_to_boxes, get_affine_transform
from tests.inference.test_predictor import CLASS_NAMES, random_image, tiny_config

CPU = torch.device("cpu")

# ----------------------------------------------------------------------------- merge


def test_soft_nms_gaussian_by_hand() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30], [0, 0, 10, 10]], dtype=np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.05], dtype=np.float32)
    keep, decayed = soft_nms_gaussian(boxes, scores, sigma=0.5, score_threshold=0.001)
    # A (0.9) first; B has IoU 0.5 with A, D IoU 1, C IoU 0. Then C, then B (decays D by IoU 0.5 again).
    np.testing.assert_array_equal(keep, [0, 2, 1, 3])
    expected = [0.9, 0.7, 0.8 * math.exp(-0.25 / 0.5), 0.05 * math.exp(-1 / 0.5) * math.exp(-0.25 / 0.5)]
    np.testing.assert_allclose(decayed, expected, rtol=1e-6)
    # With a higher threshold D (0.05 * e^-2 = 0.0068) is dropped after the first decay.
    keep, decayed = soft_nms_gaussian(boxes, scores, sigma=0.5, score_threshold=0.007)
    np.testing.assert_array_equal(keep, [0, 2, 1])
    empty_keep, empty_scores = soft_nms_gaussian(np.zeros((0, 4)), np.zeros(0), sigma=0.5, score_threshold=0.0)
    assert empty_keep.shape == (0,) and empty_scores.shape == (0,)
    with pytest.raises(ValueError, match="sigma must be > 0"):
        soft_nms_gaussian(boxes, scores, sigma=0.0, score_threshold=0.0)


def rows(*items: tuple[float, ...]) -> np.ndarray:
    return np.array(items, dtype=np.float32).reshape(-1, 6)


def test_merge_soft_nms_is_per_class_and_sorted() -> None:
    dets = rows((0, 0, 10, 10, 0.6, 0), (0, 0, 10, 10, 0.9, 1), (0, 0, 10, 10, 0.8, 0))
    merged = merge_detections(dets, MergeSettings(method="soft_nms", soft_nms_sigma=0.5, soft_nms_score_thr=0.001))
    # Class 1 alone keeps 0.9; class 0: 0.8 kept, 0.6 decayed by e^-2 (IoU 1).
    np.testing.assert_allclose(merged[:, 4], [0.9, 0.8, 0.6 * math.exp(-2.0)], rtol=1e-6)
    np.testing.assert_array_equal(merged[:, 5], [1, 0, 0])


def test_merge_nms_class_aware_and_topk() -> None:
    dets = rows(
        (0, 0, 10, 10, 0.6, 0),
        (0, 0, 10, 10, 0.9, 1),  # other class: not suppressed by the class-0 boxes
        (0, 0, 10, 10, 0.8, 0),
        (0, 0, 10, 6, 0.7, 0),  # IoU 0.6 with the 0.8 box: suppressed at 0.5, kept at 0.7
        (50, 50, 60, 60, 0.1, 0),
    )
    merged = merge_detections(dets, MergeSettings(method="nms", nms_iou=0.5))
    np.testing.assert_allclose(merged[:, 4], [0.9, 0.8, 0.1])
    merged = merge_detections(dets, MergeSettings(method="nms", nms_iou=0.7, topk=3))
    np.testing.assert_allclose(merged[:, 4], [0.9, 0.8, 0.7])
    assert merge_detections(np.zeros((0, 6)), MergeSettings()).shape == (0, 6)


def test_merge_settings_errors() -> None:
    with pytest.raises(KeyError, match=r"unknown merge method .*valid names are nms, soft_nms"):
        MergeSettings(method="wbf")
    with pytest.raises(ValueError, match="soft_nms_sigma"):
        MergeSettings(soft_nms_sigma=0)
    with pytest.raises(ValueError, match=r"eval\.scales"):
        TestTimeAugmentation(scales=())
    with pytest.raises(ValueError, match=r"eval\.resize"):
        TestTimeAugmentation(resize="crop")


# ----------------------------------------------------------------------------- scaled inputs


def test_padded_size_as_the_original() -> None:
    assert [padded_size(s) for s in (1, 31, 32, 64, 65, 95, 96)] == [32, 32, 64, 96, 96, 96, 128]


def test_pad_mode_is_a_translation_of_the_resized_image() -> None:
    image = random_image(40, 72, seed=4)
    prepared = prepare_scaled_input(image, 0.5, resize="pad", input_size=(64, 64), channel_order="bgr")
    # resized 20 x 36 -> input (20 | 31) + 1 = 32 by (36 | 31) + 1 = 64; centre (18, 10) -> (32, 16): shift (14, 6)
    assert prepared.image.shape == (32, 64, 3)
    resized = cv2.resize(image, (36, 20))
    np.testing.assert_array_equal(prepared.image[6:26, 14:50], resized)
    outside = prepared.image.copy()
    outside[6:26, 14:50] = 0
    assert outside.max() == 0
    # a box on the input grid maps back to image pixels: minus the shift, divided by the scale
    grid = np.array([[14 / 4, 6 / 4, 50 / 4, 26 / 4, 0.5, 0]], dtype=np.float32)  # output stride 4
    np.testing.assert_allclose(scaled_detections_to_image(grid, prepared, (8, 16))[0, :4], [0, 0, 72, 40], atol=1e-4)


def test_fixed_mode_at_scale_one_is_the_val_transform() -> None:
    image = random_image(40, 72, seed=5)
    prepared = prepare_scaled_input(image, 1.0, resize="fixed", input_size=(64, 64), channel_order="rgb")
    expected = ValTransform(input_size=(64, 64), channel_order="rgb")(image)
    np.testing.assert_array_equal(prepared.image, expected.image)
    assert prepared.side == expected.scale and np.allclose(prepared.center, expected.center)


@pytest.mark.parametrize(("resize", "scale"), [("fixed", 0.75), ("fixed", 1.5), ("pad", 0.6), ("pad", 1.3)])
def test_round_trip_of_boxes_through_a_scaled_input(resize: str, scale: float) -> None:
    image = random_image(50, 70, seed=6)
    prepared = prepare_scaled_input(image, scale, resize=resize, input_size=(64, 96))
    in_h, in_w = prepared.image.shape[:2]
    boxes = np.array([[10.0, 12.0, 30.0, 40.0], [0.0, 0.0, 70.0, 50.0]], dtype=np.float32)
    forward = get_affine_transform(prepared.center, prepared.side, (in_w, in_h))
    on_grid = apply_affine_to_boxes(boxes * scale, forward) / 4  # resized pixels -> input -> output grid
    dets = np.concatenate([on_grid, np.ones((2, 2), dtype=np.float32)], axis=1)
    back = scaled_detections_to_image(dets, prepared, (in_h // 4, in_w // 4))
    np.testing.assert_allclose(back[:, :4], boxes, atol=1e-3)


# ----------------------------------------------------------------------------- hand-made model


class BrightBoxModel(nn.Module):
    """Finds the bounding box of the pixels brighter than 0.5 (channel 0, images normalised to [0, 1])
    and reports it as one class-0 detection of logit 2 with the exact centre offset and size."""

    size_divisor = 32

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        batch, _, height, width = images.shape
        heat = torch.full((batch, 1, height // 4, width // 4), -20.0)
        size = torch.zeros((batch, 2, height // 4, width // 4))
        offset = torch.zeros_like(size)
        for i in range(batch):
            bright = images[i, 0] > 0.5
            xs, ys = bright.any(0).nonzero()[:, 0], bright.any(1).nonzero()[:, 0]
            x1, x2, y1, y2 = float(xs.min()), float(xs.max() + 1), float(ys.min()), float(ys.max() + 1)
            cx, cy = (x1 + x2) / 8, (y1 + y2) / 8  # centre on the output grid
            ix, iy = int(cx), int(cy)
            heat[i, 0, iy, ix] = 2.0
            size[i, :, iy, ix] = torch.tensor([(x2 - x1) / 4, (y2 - y1) / 4])
            offset[i, :, iy, ix] = torch.tensor([cx - ix, cy - iy])
        return {"heatmap": heat, "size": size, "offset": offset}


def bright_box_image() -> np.ndarray:
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[20:44, 24:40] = 255  # box [24, 20, 40, 44]; even edges survive 0.5x and 2x bilinear resizing exactly
    return image


def bright_box_predictor(resize: str, merge: MergeSettings) -> MultiScalePredictor:
    tta = TestTimeAugmentation(scales=(0.5, 1.0, 2.0), resize=resize, merge=merge)
    return MultiScalePredictor(BrightBoxModel(), ImageNormalizer([0.0] * 3, [1.0] * 3), tta,
                               input_size=(64, 64), channel_order="bgr", device=CPU)


@pytest.mark.parametrize("resize", ["fixed", "pad"])
def test_multi_scale_soft_nms_on_a_hand_made_model(resize: str) -> None:
    dets = bright_box_predictor(resize, MergeSettings(method="soft_nms", soft_nms_sigma=0.5))(bright_box_image())
    # Every scale finds the same box; soft-NMS keeps all three, decaying by e^-(1^2 / 0.5) per better copy.
    assert dets.shape == (3, 6)
    np.testing.assert_allclose(dets[:, :4], [[24, 20, 40, 44]] * 3, atol=1e-4)
    score = 1 / (1 + math.exp(-2.0))
    np.testing.assert_allclose(dets[:, 4], [score, score * math.exp(-2), score * math.exp(-4)], rtol=1e-5)


def test_multi_scale_nms_keeps_one_copy() -> None:
    dets = bright_box_predictor("pad", MergeSettings(method="nms", nms_iou=0.5, topk=5))(bright_box_image())
    assert dets.shape == (5, 6)  # the top-K of the merged passes (the rest are background cells)
    np.testing.assert_allclose(dets[0, :4], [24, 20, 40, 44], atol=1e-4)
    assert dets[0, 4] > 0.8 and dets[1, 4] < 1e-6


def test_single_scale_tta_path_equals_the_batched_path() -> None:
    torch.manual_seed(0)
    cfg = tiny_config()
    model = build_model(cfg, len(CLASS_NAMES))
    common = dict(class_names=CLASS_NAMES, input_size=(64, 64), channel_order="rgb", mean=cfg.data.mean,
                  std=cfg.data.std, device=CPU, topk=10, flip=True)
    plain = Detector(model, **common)
    image = random_image(40, 72, seed=7)
    expected = plain(image)
    via_tta = plain.multi_scale(image)
    np.testing.assert_allclose(via_tta[:, :4], expected.boxes, atol=1e-4)
    np.testing.assert_allclose(via_tta[:, 4], expected.scores, rtol=1e-6)
    # pad mode routes Detector through the per-image predictor and still returns top-K Detections
    padded = Detector(model, **common, resize="pad", scales=(0.5, 1.0))(image)
    assert len(padded) == 10 and np.all(np.diff(padded.scores) <= 0)
