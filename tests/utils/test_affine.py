"""Tests for centernet.utils.affine (the CenterNet crop/scale affine and its inverse)."""

from __future__ import annotations

import numpy as np
import pytest

from centernet.utils.affine import apply_affine_to_boxes, apply_affine_to_points, get_affine_transform


def test_hand_computed_square_output():
    # Crop of side 200 centred at (50, 40) onto 100x100: x' = 0.5 (x - 50) + 50, y' = 0.5 (y - 40) + 50.
    matrix = get_affine_transform((50.0, 40.0), 200.0, (100, 100))
    assert matrix.shape == (2, 3) and matrix.dtype == np.float64
    np.testing.assert_allclose(matrix, [[0.5, 0.0, 25.0], [0.0, 0.5, 30.0]], rtol=0, atol=1e-9)


def test_hand_computed_non_square_output():
    # output_size is (width, height) = (128, 64): scale 128 / 256 = 0.5, centre (100, 80) -> (64, 32).
    matrix = get_affine_transform(np.array([100.0, 80.0], dtype=np.float32), 256.0, (128, 64))
    np.testing.assert_allclose(matrix, [[0.5, 0.0, 14.0], [0.0, 0.5, -8.0]], rtol=0, atol=1e-9)
    inverse = get_affine_transform((100.0, 80.0), 256.0, (128, 64), inverse=True)
    np.testing.assert_allclose(inverse, [[2.0, 0.0, -28.0], [0.0, 2.0, 16.0]], rtol=0, atol=1e-9)


def test_inverse_round_trip():
    center, scale, size = (317.5, 211.25), 643.0, (96, 160)
    forward = get_affine_transform(center, scale, size)
    inverse = get_affine_transform(center, scale, size, inverse=True)
    as_3x3 = [np.vstack([m, [0.0, 0.0, 1.0]]) for m in (forward, inverse)]
    np.testing.assert_allclose(as_3x3[1] @ as_3x3[0], np.eye(3), rtol=0, atol=1e-5)
    points = np.array([[0.0, 0.0], [640.0, 480.0], [317.5, 211.25]], dtype=np.float32)
    back = apply_affine_to_points(apply_affine_to_points(points, forward), inverse)
    np.testing.assert_allclose(back, points, rtol=0, atol=1e-3)
    np.testing.assert_allclose(apply_affine_to_points(points[2:], forward), [[48.0, 80.0]], atol=1e-4)


def test_points_and_boxes():
    matrix = np.array([[0.5, 0.0, 25.0], [0.0, 0.5, 30.0]])
    points = apply_affine_to_points(np.array([[10.0, 20.0], [0.0, 0.0]]), matrix)
    assert points.dtype == np.float32
    np.testing.assert_allclose(points, [[30.0, 40.0], [25.0, 30.0]], rtol=0, atol=0)
    boxes = apply_affine_to_boxes(np.array([[10.0, 20.0, 50.0, 60.0], [0.0, 0.0, 2.0, 4.0]]), matrix)
    assert boxes.shape == (2, 4) and boxes.dtype == np.float32
    np.testing.assert_allclose(boxes, [[30.0, 40.0, 50.0, 60.0], [25.0, 30.0, 26.0, 32.0]], rtol=0, atol=0)


def test_empty_inputs():
    matrix = get_affine_transform((10.0, 10.0), 20.0, (8, 8))
    assert apply_affine_to_points(np.zeros((0, 2)), matrix).shape == (0, 2)
    assert apply_affine_to_boxes(np.zeros((0, 4)), matrix).shape == (0, 4)


@pytest.mark.parametrize("scale", [64.0, 512.0, 1333.0])
def test_centre_maps_to_output_centre(scale):
    center = np.array([321.0, 123.5], dtype=np.float32)
    matrix = get_affine_transform(center, scale, (128, 96))
    mapped = apply_affine_to_points(center[None], matrix)
    np.testing.assert_allclose(mapped, [[64.0, 48.0]], rtol=0, atol=1e-4)
    np.testing.assert_allclose(matrix[0, 0], 128.0 / scale, rtol=1e-6)
    np.testing.assert_allclose(matrix[1, 1], 128.0 / scale, rtol=1e-6)  # isotropic: width sets the scale
