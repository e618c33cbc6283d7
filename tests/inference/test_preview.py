"""Tests for centernet.inference.preview: predictions.png from a real COCO-format set on disk."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from centernet.data.coco import CocoDetection
from centernet.inference.preview import write_predictions_preview
from centernet.utils.visualize import GROUND_TRUTH_COLOUR, PREDICTION_COLOUR


def test_preview_draws_each_image_with_its_boxes(tmp_path: Path) -> None:
    images = [{"id": 7, "file_name": "a.png", "height": 60, "width": 80},
              {"id": 9, "file_name": "b.png", "height": 50, "width": 40}]
    for img in images:
        assert cv2.imwrite(str(tmp_path / img["file_name"]), np.zeros((img["height"], img["width"], 3), np.uint8))
    annotations = [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [40, 30, 30, 20], "area": 600, "iscrowd": 0}]
    ann_file = tmp_path / "instances.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations,
                                    "categories": [{"id": 1, "name": "tree"}]}))
    dataset = CocoDetection(ann_file, tmp_path)
    records = [{"image_id": 9, "category_id": 1, "bbox": [10, 30, 20, 15], "score": 0.8}]
    path = tmp_path / "predictions.png"
    write_predictions_preview(dataset, records, path, max_images=2, gap=0)
    canvas = cv2.imread(str(path))
    assert canvas.shape == (60, 80 + 40, 3)  # side by side, top-aligned
    assert tuple(canvas[40, 40]) == GROUND_TRUTH_COLOUR  # image 7: its ground-truth box, left edge
    assert tuple(canvas[40, 80 + 10]) == PREDICTION_COLOUR  # image 9: its prediction, left edge
    assert tuple(canvas[55, 80 + 10]) == (255, 255, 255)  # below the shorter image: padding
