"""Tests for centernet.data.transforms: geometry, flip, colour and determinism on real uint8 images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from centernet.data.transforms import (
    CROP_BORDER,
    DEFAULT_SCALE_CHOICES,
    IMAGENET_PCA_EIGENVALUES,
    IMAGENET_PCA_EIGENVECTORS,
    TrainTransform,
    TransformedSample,
    ValTransform,
    apply_color_matrix,
    crop_border,
    flip_boxes,
    sample_color_matrix,
)
from centernet.utils.affine import apply_affine_to_boxes, get_affine_transform

IN_SIZE = (128, 128)


def _no_color(**kwargs) -> TrainTransform:
    """Train transform without colour augmentation (pure geometry)."""
    return TrainTransform(input_size=IN_SIZE, color_jitter=False, pca_lighting_std=0.0, **kwargs)


def _painted(height: int, width: int, box: list[int]) -> np.ndarray:
    """Black BGR image with the inclusive pixel rectangle ``box`` (x1, y1, x2, y2) painted white."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    x1, y1, x2, y2 = box
    image[y1 : y2 + 1, x1 : x2 + 1] = 255
    return image


def _mask_box(image: np.ndarray) -> np.ndarray:
    """xyxy pixel extent of the pixels brighter than half intensity."""
    ys, xs = np.nonzero(image[..., 0] > 127)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float32)


def _original_color_aug(image_bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Independent float re-implementation of the original ``color_aug`` (sequential, on /255 floats)."""
    image = image_bgr.astype(np.float32) / 255.0
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    gray_mean = gray.mean()

    def brightness(alpha: float) -> None:
        image[...] *= alpha

    def contrast(alpha: float) -> None:
        image[...] = image * alpha + gray_mean * (1 - alpha)

    def saturation(alpha: float) -> None:
        image[...] = image * alpha + gray[:, :, None] * (1 - alpha)

    functions = [brightness, contrast, saturation]
    for index in rng.permutation(3):
        functions[index](1.0 + rng.uniform(-0.4, 0.4))
    alpha = rng.normal(scale=0.1, size=(3,))
    image += np.dot(IMAGENET_PCA_EIGENVECTORS, IMAGENET_PCA_EIGENVALUES * alpha)
    return np.clip(image * 255.0, 0, 255)


# ---------------------------------------------------------------- geometry helpers


def test_crop_border_hand_computed() -> None:
    assert crop_border(CROP_BORDER, 512) == 128
    assert crop_border(CROP_BORDER, 256) == 64  # 256 - 128 <= 128 -> halve once
    assert crop_border(CROP_BORDER, 200) == 64
    assert crop_border(CROP_BORDER, 100) == 32
    assert crop_border(CROP_BORDER, 1) == 0
    with pytest.raises(ValueError, match="size >= 1"):
        crop_border(CROP_BORDER, 0)


def test_flip_boxes_hand_computed() -> None:
    boxes = np.array([[10, 20, 50, 60], [0, 0, 199, 5]], dtype=np.float32)
    expected = np.array([[149, 20, 189, 60], [0, 0, 199, 5]], dtype=np.float32)
    np.testing.assert_array_equal(flip_boxes(boxes, 200), expected)
    np.testing.assert_array_equal(flip_boxes(flip_boxes(boxes, 200), 200), boxes)  # involution
    assert flip_boxes(np.zeros((0, 4), np.float32), 200).shape == (0, 4)


def test_default_constants() -> None:
    np.testing.assert_allclose(DEFAULT_SCALE_CHOICES, np.arange(0.6, 1.4, 0.1), atol=1e-9)
    # The eigen-vectors are orthonormal up to the rounding of the published constants.
    np.testing.assert_allclose(IMAGENET_PCA_EIGENVECTORS.T @ IMAGENET_PCA_EIGENVECTORS, np.eye(3), atol=1e-3)


# ---------------------------------------------------------------- val transform


def test_val_hand_computed_box_and_padding() -> None:
    # H=100, W=200 -> c = (100, 50), s = 200, k = 128 / 200 = 0.64: x' = (x - 100) k + 64.
    image = np.full((100, 200, 3), 200, dtype=np.uint8)
    boxes = np.array([[50, 25, 150, 75], [-50, -25, 250, 125]], dtype=np.float32)
    out = ValTransform(input_size=IN_SIZE, channel_order="bgr")(image, boxes)
    assert isinstance(out, TransformedSample)
    np.testing.assert_allclose(out.boxes, [[32, 48, 96, 80], [-32, 16, 160, 112]], atol=1e-4)  # not clipped
    assert out.boxes.dtype == np.float32
    np.testing.assert_array_equal(out.center, [100, 50])
    assert out.scale == 200.0 and out.flipped is False
    # Rows 32..95 hold the image (source y = (y' - 64) / 0.64 + 50 in [0, 99]); the rest is zero padding.
    assert out.image.shape == (128, 128, 3) and out.image.dtype == np.uint8
    assert (out.image[:32] == 0).all() and (out.image[96:] == 0).all()
    assert (out.image[32:96] == 200).all()


def test_val_channel_order_and_empty_boxes() -> None:
    image = np.empty((40, 30, 3), dtype=np.uint8)
    image[:] = (10, 20, 30)  # B, G, R
    rgb = ValTransform(input_size=(16, 24), channel_order="rgb")(image, None)
    bgr = ValTransform(input_size=(16, 24), channel_order="bgr")(image, np.zeros((0, 4), np.float32))
    assert rgb.image.shape == (16, 24, 3)
    np.testing.assert_array_equal(rgb.image[8, 12], [30, 20, 10])
    np.testing.assert_array_equal(bgr.image[8, 12], [10, 20, 30])
    assert rgb.boxes.shape == (0, 4) and bgr.boxes.shape == (0, 4) and rgb.boxes.dtype == np.float32


def test_val_painted_rectangle_round_trip() -> None:
    box = [40, 30, 100, 80]
    image = _painted(120, 160, box)
    out = ValTransform(input_size=IN_SIZE, channel_order="bgr")(image, np.array([box], np.float32))
    np.testing.assert_allclose(_mask_box(out.image), out.boxes[0], atol=1.5)
    # The sample's matrix maps back to the image exactly.
    back = apply_affine_to_boxes(out.boxes, cv2.invertAffineTransform(out.matrix))
    np.testing.assert_allclose(back[0], box, atol=1e-3)


def test_val_jpeg_round_trip(tmp_path: Path) -> None:
    image = np.zeros((60, 90, 3), dtype=np.uint8)
    image[:] = (40, 120, 200)
    path = tmp_path / "sample.jpg"
    assert cv2.imwrite(str(path), image)
    loaded = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert loaded is not None and loaded.dtype == np.uint8
    out = ValTransform(input_size=(64, 64), channel_order="rgb")(loaded, np.array([[0, 0, 89, 59]], np.float32))
    # s = 90, k = 64 / 90: the image occupies rows 32 -/+ 30k, i.e. about 10.7 .. 53.3.
    np.testing.assert_allclose(out.image[32, 32], (200, 120, 40), atol=3)
    assert (out.image[:10] == 0).all() and (out.image[55:] == 0).all()
    k = 64 / 90
    np.testing.assert_allclose(out.boxes[0], [-45 * k + 32, -30 * k + 32, 44 * k + 32, 29 * k + 32], atol=1e-4)
    train = TrainTransform(input_size=(64, 64))(loaded, None, np.random.default_rng(0))
    assert train.image.shape == (64, 64, 3) and train.image.dtype == np.uint8 and train.boxes.shape == (0, 4)


# ---------------------------------------------------------------- train transform


def test_train_flip_hand_computed_box() -> None:
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    box = np.array([[10, 20, 50, 60]], dtype=np.float32)
    out = _no_color(scale_choices=(1.0,), flip_prob=1.0)(image, box, np.random.default_rng(3))
    assert out.flipped is True and out.scale == 200.0
    # Centre drawn in [64, 136) x [32, 68) of the original; the warp uses the mirrored c0' = 199 - c0.
    assert 64 <= out.center[0] < 136 and 32 <= out.center[1] < 68
    warp_cx = 199 - out.center[0]
    k = 128 / 200
    flipped = np.array([149, 20, 189, 60], dtype=np.float64)  # 200 - x - 1, x1 and x2 swapped
    expected = np.empty(4)
    expected[0::2] = (flipped[0::2] - warp_cx) * k + 64
    expected[1::2] = (flipped[1::2] - out.center[1]) * k + 64
    np.testing.assert_allclose(out.boxes[0], expected, atol=1e-3)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_train_painted_rectangle_round_trip_with_flip(seed: int) -> None:
    # Scale 1.3 keeps the whole 120x160 image in view for every allowed centre.
    box = [40, 30, 100, 80]
    image = _painted(120, 160, box)
    transform = _no_color(scale_choices=(1.3,), flip_prob=1.0, channel_order="bgr")
    out = transform(image, np.array([box], np.float32), np.random.default_rng(seed))
    assert out.flipped
    np.testing.assert_allclose(_mask_box(out.image), out.boxes[0], atol=1.5)
    # matrix maps the ORIGINAL image to the input: inverting it gives back the box with x1/x2 swapped.
    back = apply_affine_to_boxes(out.boxes, cv2.invertAffineTransform(out.matrix))[0]
    np.testing.assert_allclose(back[[2, 1, 0, 3]], box, atol=1e-3)


def test_train_folded_flip_equals_explicit_flip_then_warp() -> None:
    yy, xx = np.mgrid[0:90, 0:150]
    image = np.stack([xx, yy, (xx + yy) // 2], axis=-1).astype(np.uint8)  # smooth, asymmetric
    out = _no_color(flip_prob=1.0, channel_order="bgr")(image, None, np.random.default_rng(7))
    warp_center = (150 - 1 - out.center[0], out.center[1])
    matrix = get_affine_transform(warp_center, out.scale, (IN_SIZE[1], IN_SIZE[0]))
    explicit = cv2.warpAffine(np.ascontiguousarray(image[:, ::-1]), matrix, (IN_SIZE[1], IN_SIZE[0]))
    assert np.abs(out.image.astype(int) - explicit.astype(int)).max() <= 1


def test_train_flip_mirrors_the_same_crop() -> None:
    # Same seed: same centre/scale draws; the flip only mirrors. With x' = W - 1 - x and c0' = W - 1 - c0,
    # the flipped output column u shows what the plain output shows at column 128 - u (= 2 * 64 - u).
    yy, xx = np.mgrid[0:90, 0:150]
    image = np.stack([xx, yy, (xx + 2 * yy) // 3], axis=-1).astype(np.uint8)
    plain = _no_color(flip_prob=0.0, channel_order="bgr")(image, None, np.random.default_rng(4))
    mirrored = _no_color(flip_prob=1.0, channel_order="bgr")(image, None, np.random.default_rng(4))
    assert mirrored.flipped and not plain.flipped
    np.testing.assert_array_equal(mirrored.center, plain.center)
    diff = mirrored.image[:, 1:].astype(int) - plain.image[:, :0:-1].astype(int)
    assert np.abs(diff).max() <= 1


def test_train_random_crop_ranges_and_flip_rate() -> None:
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    transform = _no_color()
    rng = np.random.default_rng(0)
    flips, scales = 0, set()
    for _ in range(200):
        out = transform(image, None, rng)
        assert 64 <= out.center[0] < 136 and 32 <= out.center[1] < 68  # original-image pixels
        assert float(out.center[0]).is_integer() and float(out.center[1]).is_integer()
        scales.add(round(out.scale / 200, 6))
        flips += out.flipped
    assert scales == {round(v, 6) for v in DEFAULT_SCALE_CHOICES}
    assert 70 <= flips <= 130  # p = 0.5, n = 200


def test_train_jitter_mode_replays_original_formula() -> None:
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    transform = _no_color(random_crop=False, flip_prob=0.0)
    out = transform(image, None, np.random.default_rng(11))
    replay = np.random.default_rng(11)
    shift_x, shift_y, scale_draw = replay.standard_normal(3)
    s0 = 200.0
    expected_cx = 100 + s0 * np.clip(shift_x * 0.1, -0.2, 0.2)
    expected_cy = 50 + s0 * np.clip(shift_y * 0.1, -0.2, 0.2)
    np.testing.assert_allclose(out.center, [expected_cx, expected_cy], rtol=1e-6)
    assert out.scale == pytest.approx(s0 * np.clip(scale_draw * 0.4 + 1, 0.6, 1.4))
    for seed in range(50):
        out = transform(image, None, np.random.default_rng(seed))
        assert 0.6 * s0 <= out.scale <= 1.4 * s0
        assert np.all(np.abs(out.center - [100, 50]) <= 0.2 * s0 + 1e-3)


def test_train_determinism_and_shapes() -> None:
    rng = np.random.default_rng(123)
    image = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    boxes = np.array([[5, 6, 30, 40], [20, 10, 60, 47]], dtype=np.float32)
    transform = TrainTransform(input_size=(32, 40))
    a = transform(image, boxes, np.random.default_rng(5))
    b = transform(image, boxes, np.random.default_rng(5))
    c = transform(image, boxes, np.random.default_rng(6))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.center, b.center)
    assert (a.scale, a.flipped) == (b.scale, b.flipped)
    assert not np.array_equal(a.image, c.image)
    assert a.image.shape == (32, 40, 3) and a.image.dtype == np.uint8
    assert a.boxes.shape == (2, 4) and a.boxes.dtype == np.float32 and a.center.dtype == np.float32
    empty = transform(image, np.zeros((0, 4), np.float32), np.random.default_rng(5))
    assert empty.boxes.shape == (0, 4) and empty.boxes.dtype == np.float32
    np.testing.assert_array_equal(empty.image, a.image)  # boxes do not consume randomness


def test_train_uses_only_the_given_rng() -> None:
    image = np.full((50, 50, 3), 90, dtype=np.uint8)
    transform = TrainTransform(input_size=(32, 32))
    np.random.seed(0)
    a = transform(image, None, np.random.default_rng(1))
    np.random.seed(1)
    b = transform(image, None, np.random.default_rng(1))
    np.testing.assert_array_equal(a.image, b.image)


# ---------------------------------------------------------------- colour


def test_color_matrix_matches_original_float_color_aug() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(30, 220, size=(24, 32, 3), dtype=np.uint8)
    for seed in range(20):
        matrix = sample_color_matrix(image, np.random.default_rng(seed))
        ours = apply_color_matrix(image, matrix, "bgr")
        reference = _original_color_aug(image, np.random.default_rng(seed))
        assert ours.dtype == np.uint8
        assert np.abs(ours.astype(np.float64) - reference).max() <= 1.0
        np.testing.assert_array_equal(apply_color_matrix(image, matrix, "rgb"), ours[..., ::-1])


def test_color_keeps_uint8_and_mid_gray_mean_in_expectation() -> None:
    image = np.full((8, 8, 3), 128, dtype=np.uint8)
    means = []
    for seed in range(300):
        out = apply_color_matrix(image, sample_color_matrix(image, np.random.default_rng(seed)))
        assert out.dtype == np.uint8 and out.shape == image.shape
        means.append(out.mean())
    assert abs(np.mean(means) - 128) < 2.0
    assert np.std(means) > 5  # brightness does vary the image


def test_color_saturates_instead_of_wrapping() -> None:
    image = np.full((4, 4, 3), 250, dtype=np.uint8)
    bright = np.concatenate([1.5 * np.eye(3), np.zeros((3, 1))], axis=1)
    np.testing.assert_array_equal(apply_color_matrix(image, bright), 255)
    dark = np.concatenate([np.eye(3), np.full((3, 1), -300.0)], axis=1)
    np.testing.assert_array_equal(apply_color_matrix(image, dark), 0)


def test_color_disabled_is_identity_up_to_channel_order() -> None:
    image = np.random.default_rng(1).integers(0, 256, size=(20, 20, 3), dtype=np.uint8)
    matrix = sample_color_matrix(image, np.random.default_rng(0), jitter_strength=0.0, lighting_std=0.0)
    np.testing.assert_array_equal(apply_color_matrix(image, matrix, "bgr"), image)


# ---------------------------------------------------------------- errors


def test_bad_inputs_raise_clear_errors() -> None:
    transform = TrainTransform(input_size=IN_SIZE)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="uint8"):
        transform(np.zeros((10, 10, 3), np.float32), None, rng)
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        transform(np.zeros((10, 10), np.uint8), None, rng)
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        transform(np.zeros((10, 10, 3), np.uint8), np.zeros((2, 5), np.float32), rng)
    with pytest.raises(ValueError, match="channel_order"):
        ValTransform(input_size=IN_SIZE, channel_order="rgba")
    with pytest.raises(ValueError, match="input_size"):
        ValTransform(input_size=(0, 128))
    with pytest.raises(ValueError, match="flip_prob"):
        TrainTransform(input_size=IN_SIZE, flip_prob=1.5)
