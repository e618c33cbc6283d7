"""Merging detections of several test-time passes: per-class NMS or Gaussian soft-NMS, then top-K.

Multi-scale testing decodes every scale on its own and maps the boxes back to image pixels, so one
object is found several times. :func:`merge_detections` keeps one detection per object (``nms``) or
decays the scores of overlapping ones (``soft_nms``, Bodla et al. 2017, Gaussian:
``score *= exp(-IoU^2 / sigma)``), class by class, and keeps the best ``topk`` rows.

Deviations from the original CenterNet merge (named here on purpose): IoU is computed on continuous
coordinates (``(x2 - x1) * (y2 - y1)``, as COCO scores boxes), not with the ``+ 1`` pixel convention of
the original Cython soft-NMS; and only the rows soft-NMS returns are kept (the original ignored the
returned indices and kept dropped rows too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import batched_nms

from centernet.decode import BOX_COORDS, CLASS_COLUMN, NUM_DET_COLUMNS, SCORE_COLUMN
from centernet.utils.registry import Registry


def box_iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``[4]`` xyxy box with ``[N, 4]`` xyxy boxes (continuous coordinates; 0 for empty unions).

    Returns:
        float64 ``[N]``.
    """
    box = np.asarray(box, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, BOX_COORDS)
    inter_w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0.0, None)
    inter_h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0.0, None)
    inter = inter_w * inter_h
    area = max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0.0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0.0, None)
    union = area + areas - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def soft_nms_gaussian(
    boxes: np.ndarray, scores: np.ndarray, *, sigma: float, score_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian soft-NMS of one class.

    Repeatedly picks the highest (decayed) score, keeps it, multiplies the scores of all remaining
    boxes by ``exp(-IoU(picked, box)^2 / sigma)`` and drops the boxes whose score fell below
    ``score_threshold`` (boxes already below it are dropped at the start).

    Args:
        boxes: ``[N, 4]`` xyxy.
        scores: ``[N]`` scores.
        sigma: Gaussian decay parameter (> 0).
        score_threshold: lowest score kept.

    Returns:
        ``(indices int64 [K], scores float32 [K])``: the kept rows of ``boxes`` in selection order (scores
        non-increasing) and their decayed scores.
    """
    if sigma <= 0:
        raise ValueError(f"soft_nms_gaussian: sigma must be > 0, got {sigma}")
    current = np.asarray(scores, dtype=np.float64).reshape(-1).copy()
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, BOX_COORDS)
    remaining = np.flatnonzero(current >= score_threshold)
    keep: list[int] = []
    kept_scores: list[float] = []
    while remaining.size:
        best_pos = int(np.argmax(current[remaining]))  # first of equal scores: stable
        best = int(remaining[best_pos])
        keep.append(best)
        kept_scores.append(float(current[best]))
        remaining = np.delete(remaining, best_pos)
        if not remaining.size:
            break
        iou = box_iou_one_to_many(boxes[best], boxes[remaining])
        current[remaining] *= np.exp(-(iou**2) / sigma)
        remaining = remaining[current[remaining] >= score_threshold]
    return np.asarray(keep, dtype=np.int64), np.asarray(kept_scores, dtype=np.float32)


@dataclass(frozen=True)
class MergeSettings:
    """How detections of several passes are merged.

    Attributes:
        method: ``nms`` | ``soft_nms`` (a name in :data:`MERGE_METHODS`).
        nms_iou: IoU above which ``nms`` suppresses the lower-scoring box of the same class.
        soft_nms_sigma: Gaussian decay of ``soft_nms``: ``score *= exp(-IoU^2 / sigma)``.
        soft_nms_score_thr: ``soft_nms`` drops detections whose decayed score falls below this.
        topk: rows kept after merging (best first).
    """

    method: str = "soft_nms"
    nms_iou: float = 0.5
    soft_nms_sigma: float = 0.5
    soft_nms_score_thr: float = 0.001
    topk: int = 100

    def __post_init__(self) -> None:
        _ = MERGE_METHODS[self.method]  # an unknown name raises, listing the valid ones
        if not 0.0 <= self.nms_iou <= 1.0:
            raise ValueError(f"eval.nms_iou must be in [0, 1], got {self.nms_iou}")
        if self.soft_nms_sigma <= 0:
            raise ValueError(f"eval.soft_nms_sigma must be > 0, got {self.soft_nms_sigma}")
        if self.topk < 1:
            raise ValueError(f"eval.topk must be >= 1, got {self.topk}")


MergeFn = Callable[[np.ndarray, MergeSettings], np.ndarray]
MERGE_METHODS: Registry[MergeFn] = Registry("merge method (eval.merge)")


@MERGE_METHODS.register("nms")
def _merge_nms(rows: np.ndarray, settings: MergeSettings) -> np.ndarray:
    """Class-aware hard NMS (torchvision ``batched_nms``); returns the kept rows, best first."""
    tensor = torch.from_numpy(rows)
    keep = batched_nms(
        tensor[:, :BOX_COORDS].double(),
        tensor[:, SCORE_COLUMN].double(),
        tensor[:, CLASS_COLUMN].long(),
        settings.nms_iou,
    )
    return rows[keep.numpy()]


@MERGE_METHODS.register("soft_nms")
def _merge_soft_nms(rows: np.ndarray, settings: MergeSettings) -> np.ndarray:
    """Gaussian soft-NMS class by class; returns the kept rows with decayed scores."""
    merged = []
    for label in np.unique(rows[:, CLASS_COLUMN]):
        class_rows = rows[rows[:, CLASS_COLUMN] == label]
        keep, scores = soft_nms_gaussian(
            class_rows[:, :BOX_COORDS],
            class_rows[:, SCORE_COLUMN],
            sigma=settings.soft_nms_sigma,
            score_threshold=settings.soft_nms_score_thr,
        )
        kept = class_rows[keep].copy()
        kept[:, SCORE_COLUMN] = scores
        merged.append(kept)
    return np.concatenate(merged) if merged else rows[:0]


def merge_detections(rows: np.ndarray, settings: MergeSettings) -> np.ndarray:
    """Merge the detections of several passes over one image.

    Args:
        rows: ``[N, 6]`` ``[x1, y1, x2, y2, score, class]`` in image pixels, from all passes together.
        settings: the merge method and its parameters.

    Returns:
        float32 ``[K, 6]``, ``K <= settings.topk``, sorted by score (best first; ties keep input order).
    """
    rows = np.asarray(rows, dtype=np.float32).reshape(-1, NUM_DET_COLUMNS)
    if not len(rows):
        return rows.copy()
    merged = MERGE_METHODS[settings.method](rows, settings)
    order = np.argsort(-merged[:, SCORE_COLUMN], kind="stable")[: settings.topk]
    return np.ascontiguousarray(merged[order], dtype=np.float32)
