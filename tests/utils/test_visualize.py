"""Tests for the ground truth vs prediction drawing and image tiling in centernet.utils.visualize."""

from __future__ import annotations

import numpy as np
import pytest

from centernet.utils.visualize import (
    GROUND_TRUTH_COLOUR,
    LABEL_PADDING,
    LEGEND_SWATCH_PX,
    PREDICTION_COLOUR,
    draw_predictions_and_ground_truth,
    tile_images,
)


def test_ground_truth_and_predictions_in_their_colours() -> None:
    image = np.zeros((100, 100, 3), dtype=np.uint8)
    gt = np.array([[50, 50, 90, 90]], dtype=np.float32)
    pred = np.array([[60, 60, 80, 80], [52, 52, 58, 58]], dtype=np.float32)
    canvas = draw_predictions_and_ground_truth(image, gt, pred, np.array([0.9, 0.1]), score_thr=0.3)
    assert image.max() == 0  # the input is not drawn on
    assert tuple(canvas[70, 50]) == GROUND_TRUTH_COLOUR  # left edge of the ground-truth box
    assert tuple(canvas[70, 60]) == PREDICTION_COLOUR  # left edge of the kept prediction
    assert tuple(canvas[55, 52]) == (0, 0, 0)  # the prediction scoring 0.1 < 0.3 is not drawn
    assert tuple(canvas[70, 70]) == (0, 0, 0)  # inside the boxes: untouched
    swatch = LABEL_PADDING + LEGEND_SWATCH_PX // 2
    assert tuple(canvas[swatch, swatch]) == GROUND_TRUTH_COLOUR  # first legend entry


def test_draw_rejects_mismatched_scores() -> None:
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        draw_predictions_and_ground_truth(image, np.zeros((0, 4)), np.zeros((2, 4)), np.ones(1))


def test_tile_images() -> None:
    a = np.full((4, 3, 3), 10, dtype=np.uint8)
    b = np.full((2, 5, 3), 20, dtype=np.uint8)
    tiled = tile_images([a, b], gap=2)
    assert tiled.shape == (4, 3 + 2 + 5, 3)
    assert (tiled[:, :3] == 10).all() and (tiled[:, 3:5] == 255).all()
    assert (tiled[:2, 5:] == 20).all() and (tiled[2:, 5:] == 255).all()  # shorter image: white below
    with pytest.raises(ValueError, match="no images"):
        tile_images([])
