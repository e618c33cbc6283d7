"""``predictions.png``: validation images with their ground-truth and predicted boxes, side by side."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from centernet.data.base import IMAGE_ERRORS, DetectionDataset
from centernet.utils.visualize import DEFAULT_SCORE_THR, draw_predictions_and_ground_truth, tile_images

logger = logging.getLogger(__name__)

PREDICTIONS_FILENAME = "predictions.png"
DEFAULT_PREVIEW_IMAGES = 4  # the first N val images (a COCO-sized val set would make a huge picture)
TILE_GAP_PX = 8


def _xywh_to_xyxy(records: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.array([r["bbox"] for r in records], dtype=np.float32).reshape(-1, 4)  # [K, 4] xywh
    boxes[:, 2:] += boxes[:, :2]
    return boxes, np.array([r["score"] for r in records], dtype=np.float32)


def write_predictions_preview(
    dataset: DetectionDataset,
    records: Sequence[dict[str, Any]],
    path: Path,
    *,
    max_images: int = DEFAULT_PREVIEW_IMAGES,
    score_thr: float = DEFAULT_SCORE_THR,
    gap: int = TILE_GAP_PX,
) -> None:
    """Draw the first ``max_images`` images of ``dataset`` with ground truth and predictions into one PNG.

    Args:
        dataset: the evaluated dataset (``load_raw`` gives the image and its ground-truth boxes).
        records: COCO-results records (``image_id``, ``bbox`` ``[x, y, w, h]`` in image pixels, ``score``).
        path: the PNG to write (its folder must exist); not written, with a warning, when an image file is
            missing or unreadable.
        max_images: how many images to draw (from the start of the dataset).
        score_thr: predictions scoring below this are not drawn.
        gap: white pixels between neighbouring images.
    """
    by_image: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        by_image.setdefault(int(record["image_id"]), []).append(record)
    panels = []
    for index in range(min(max_images, len(dataset))):
        try:
            raw = dataset.load_raw(index)
        except IMAGE_ERRORS as error:  # scoring a detections file needs the annotations only
            logger.warning("no %s: %s", path.name, error)
            return
        pred_boxes, scores = _xywh_to_xyxy(by_image.get(int(raw["image_id"]), []))
        gt_boxes = raw["boxes"][~raw["ignore"]]
        panels.append(
            draw_predictions_and_ground_truth(raw["image"], gt_boxes, pred_boxes, scores, score_thr=score_thr)
        )
    if not panels:
        return
    if not cv2.imwrite(str(path), tile_images(panels, gap=gap)):
        raise OSError(f"cannot write {path}")
    logger.info("wrote %s (%d val images, predictions with score >= %g)", path, len(panels), score_thr)
