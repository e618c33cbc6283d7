"""Box precision and recall at a score threshold, as tree-crown detection papers (DeepForest) report them.

Rules (also in docs/evaluation.md):

* Class-agnostic: every detection may match every ground-truth box (the tree set has one class).
* Detections count when ``score >= score_threshold``.
* Per image, detections and ground-truth objects are paired one-to-one (Hungarian assignment, scipy's
  ``linear_sum_assignment``) among the pairs with ``IoU > iou_threshold`` (DeepForest's strict ``>``,
  default 0.4): the assignment takes the largest possible number of pairs and, among those, the largest
  total IoU. The number of true positives therefore does not depend on the detection order, on score
  ties or on IoU ties. (DeepForest 2.1 maximises the total intersection area first and applies the IoU
  threshold to the chosen pairs afterwards, which can pair a box with a worse neighbour and lose a match.)
* A second detection of an already matched object is a false positive.
* Ignore regions (COCO ``iscrowd``, VOC ``difficult``) are not objects: they are not counted in recall,
  and a detection left unmatched whose area lies inside an ignore region by more than ``iou_threshold``
  (intersection over the detection's area, as COCO treats crowd regions) is neither a true nor a false
  positive.
* ``precision = TP / (TP + FP)`` and ``recall = TP / objects``, pooled over all images. An undefined ratio
  (no detection above the threshold, no object) is reported as 0; the counts next to it tell the cases apart.
  ``F1 = 2 P R / (P + R)``, 0 when ``P + R = 0``.
* DeepForest's own ``box_precision`` / ``box_recall`` are means over images instead; they are reported
  too (``image_mean_*``): the mean is over images with at least one object, and an image without
  detections above the threshold counts recall 0 and is left out of the precision mean (0 when no image
  is left).
* The F1 curve repeats the count at each threshold of ``curve_thresholds`` (0, 0.01, ..., 0.99 by
  default); ``best_f1_threshold`` is the lowest threshold reaching the highest F1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from centernet.evaluation.voc import voc_box_iou

DEFAULT_IOU_THRESHOLD = 0.4
DEFAULT_SCORE_THRESHOLD = 0.3
CURVE_STEPS = 100
DEFAULT_CURVE_THRESHOLDS = tuple(round(i / CURVE_STEPS, 2) for i in range(CURVE_STEPS))
F1_CURVE_FILENAME = "f1_curve.png"
BOX_COORDS = 4
PLOT_INCHES = (5.0, 3.6)
PLOT_DPI = 110


def _boxes(value: Any, where: str) -> np.ndarray:
    arr = np.asarray(value if value is not None else np.zeros((0, BOX_COORDS)), dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, BOX_COORDS))
    if arr.ndim != 2 or arr.shape[1] != BOX_COORDS or not np.isfinite(arr).all():
        raise ValueError(f"{where}: expected finite [N, 4] x1, y1, x2, y2 boxes, got shape {arr.shape}")
    return arr


def _per_box(value: Any, count: int, where: str, dtype: type) -> np.ndarray:
    arr: np.ndarray = np.asarray(value, dtype=dtype).reshape(-1)
    if len(arr) != count:
        raise ValueError(f"{where}: expected {count} values (one per box), got {len(arr)}")
    return arr


class _ImageMatcher:
    """One image's IoUs, with the counts for each number of top-scoring detections kept (cached)."""

    def __init__(self, gt: Mapping[str, Any], det: Mapping[str, Any], index: int, iou_threshold: float) -> None:
        gt_boxes = _boxes(gt.get("boxes"), f"ground_truth[{index}].boxes")
        ignore = gt.get("ignore")
        ignore = np.zeros(len(gt_boxes), bool) if ignore is None else _per_box(
            ignore, len(gt_boxes), f"ground_truth[{index}].ignore", bool
        )
        det_boxes = _boxes(det.get("boxes"), f"detections[{index}].boxes")
        scores = _per_box(det.get("scores", []), len(det_boxes), f"detections[{index}].scores", np.float64)
        order = np.argsort(-scores, kind="stable")
        self.scores = scores[order]  # descending
        det_boxes = det_boxes[order]
        self.num_objects = int((~ignore).sum())
        self.iou = voc_box_iou(gt_boxes[~ignore], det_boxes, pixel_offset=0.0).reshape(self.num_objects, len(det_boxes))
        self.in_ignore = _inside_fraction(det_boxes, gt_boxes[ignore]) > iou_threshold  # [M]
        self.iou_threshold = iou_threshold
        self._counts: dict[int, tuple[int, int, int]] = {}

    def counts(self, score_threshold: float) -> tuple[int, int, int]:
        """``(true positives, false positives, ignored detections)`` of the detections scoring >= threshold."""
        kept = int((self.scores >= score_threshold).sum())
        if kept not in self._counts:
            self._counts[kept] = self._count(kept)
        return self._counts[kept]

    def _count(self, kept: int) -> tuple[int, int, int]:
        matched = _matched_detections(self.iou[:, :kept], self.iou_threshold)
        unmatched = np.ones(kept, dtype=bool)
        unmatched[matched] = False
        ignored = int((unmatched & self.in_ignore[:kept]).sum())
        true_positives = len(matched)
        return true_positives, kept - true_positives - ignored, ignored


def _inside_fraction(det_boxes: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """float ``[M]``: the largest share of each detection's area inside one of ``regions``."""
    if len(regions) == 0 or len(det_boxes) == 0:
        return np.zeros(len(det_boxes))
    lo = np.maximum(det_boxes[:, None, :2], regions[None, :, :2])
    hi = np.minimum(det_boxes[:, None, 2:], regions[None, :, 2:])
    inter = np.clip(hi - lo, 0.0, None).prod(axis=2)  # [M, R]
    area = np.clip(det_boxes[:, 2:] - det_boxes[:, :2], 0.0, None).prod(axis=1)
    return np.where(area > 0, inter.max(axis=1) / np.where(area > 0, area, 1.0), 0.0)


def _matched_detections(iou: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Columns of ``iou`` (``[objects, detections]``) paired by the maximum-cardinality, maximum-IoU assignment."""
    from scipy.optimize import linear_sum_assignment  # scipy.optimize takes ~0.5 s to import: only when used

    eligible = iou > iou_threshold
    rows, cols = np.flatnonzero(eligible.any(axis=1)), np.flatnonzero(eligible.any(axis=0))
    if len(rows) == 0:
        return np.zeros(0, dtype=np.int64)
    sub_iou, sub_ok = iou[np.ix_(rows, cols)], eligible[np.ix_(rows, cols)]
    # A pair is worth more than any total of IoUs (each <= 1), so the most pairs win, then the most IoU.
    pair_bonus = float(min(sub_iou.shape) + 1)
    weights = np.where(sub_ok, pair_bonus + sub_iou, 0.0)
    row_ind, col_ind = linear_sum_assignment(weights, maximize=True)
    paired = sub_ok[row_ind, col_ind]
    return cols[col_ind[paired]]


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator > 0 else 0.0


def _f1(precision: float, recall: float) -> float:
    return _ratio(2.0 * precision * recall, precision + recall)


def _per_image(images: Sequence[_ImageMatcher], score_threshold: float) -> list[dict[str, Any]]:
    """Each image's counts, precision and recall at one threshold (an image without objects has recall 0)."""
    rows = []
    for image in images:
        tp, fp, ignored = image.counts(score_threshold)
        rows.append({"tp": int(tp), "fp": int(fp), "fn": image.num_objects - int(tp), "ignored": int(ignored),
                     "objects": image.num_objects, "precision": _ratio(tp, tp + fp),
                     "recall": _ratio(tp, image.num_objects)})
    return rows


def _summary(images: Sequence[_ImageMatcher], score_threshold: float) -> dict[str, Any]:
    """Pooled and per-image-mean figures at one score threshold."""
    counts = [image.counts(score_threshold) for image in images]
    tp, fp, ignored = (int(sum(c[i] for c in counts)) for i in range(3))
    objects = sum(image.num_objects for image in images)
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, objects)
    with_objects = [(c, image.num_objects) for c, image in zip(counts, images, strict=True) if image.num_objects]
    recalls = [c[0] / n for c, n in with_objects]
    precisions = [c[0] / (c[0] + c[1]) for c, _ in with_objects if c[0] + c[1] > 0]
    return {
        "precision": precision, "recall": recall, "f1": _f1(precision, recall),
        "tp": tp, "fp": fp, "fn": objects - tp, "ignored": ignored, "objects": objects,
        "image_mean_precision": float(np.mean(precisions)) if precisions else 0.0,
        "image_mean_recall": float(np.mean(recalls)) if recalls else 0.0,
    }


def precision_recall_report(
    ground_truth: Sequence[Mapping[str, Any]],
    detections: Sequence[Mapping[str, Any]],
    *,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    curve_thresholds: Sequence[float] = DEFAULT_CURVE_THRESHOLDS,
) -> dict[str, Any]:
    """Precision, recall and F1 at ``score_threshold`` and the F1-versus-threshold curve (rules: module docstring).

    Args:
        ground_truth: per image ``{"boxes": [N, 4] xyxy, "ignore": bool [N] (optional)}``.
        detections: per image, same order, ``{"boxes": [M, 4] xyxy, "scores": [M]}``, same pixel coordinates.
        iou_threshold: a detection and an object can pair when their IoU is above this.
        score_threshold: detections scoring at least this are counted.
        curve_thresholds: score thresholds of the F1 curve.

    Returns:
        A JSON-serialisable dict; ``{iou}`` stands for ``iou_threshold`` written with ``:g`` (``0.4``):
        ``precision@{iou}``, ``recall@{iou}``, ``f1@{iou}``, ``image_mean_precision@{iou}``,
        ``image_mean_recall@{iou}``, ``score_threshold``, ``iou_threshold``, the counts ``tp``, ``fp``,
        ``fn``, ``ignored`` (detections in ignore regions), ``objects``, ``detections``
        (``tp + fp + ignored``), ``per_image`` (per image, in order: ``tp``, ``fp``, ``fn``, ``ignored``,
        ``objects``, ``precision``, ``recall`` at ``score_threshold``), then ``best_f1``,
        ``best_f1_threshold`` and ``curve`` (``{"thresholds", "precision", "recall", "f1"}`` lists).

    Raises:
        ValueError: one line naming the image index and the key of a malformed entry.
    """
    if len(ground_truth) != len(detections):
        raise ValueError(f"ground_truth has {len(ground_truth)} images but detections has {len(detections)}")
    if not 0.0 <= iou_threshold < 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1), got {iou_threshold}")
    pairs = enumerate(zip(ground_truth, detections, strict=True))
    images = [_ImageMatcher(gt, det, i, iou_threshold) for i, (gt, det) in pairs]
    at = _summary(images, score_threshold)
    curve = [_summary(images, float(t)) for t in curve_thresholds]
    f1s = [point["f1"] for point in curve]
    best = int(np.argmax(f1s)) if curve else 0
    iou = f"{iou_threshold:g}"
    return {
        f"precision@{iou}": at["precision"],
        f"recall@{iou}": at["recall"],
        f"f1@{iou}": at["f1"],
        f"image_mean_precision@{iou}": at["image_mean_precision"],
        f"image_mean_recall@{iou}": at["image_mean_recall"],
        "score_threshold": float(score_threshold),
        "iou_threshold": float(iou_threshold),
        **{key: at[key] for key in ("tp", "fp", "fn", "ignored", "objects")},
        "detections": at["tp"] + at["fp"] + at["ignored"],
        "per_image": _per_image(images, score_threshold),
        "best_f1": f1s[best] if curve else 0.0,
        "best_f1_threshold": float(curve_thresholds[best]) if curve else float(score_threshold),
        "curve": {
            "thresholds": [float(t) for t in curve_thresholds],
            "precision": [point["precision"] for point in curve],
            "recall": [point["recall"] for point in curve],
            "f1": f1s,
        },
    }


def ground_truth_from_dataset(dataset: Any) -> list[dict[str, Any]]:
    """``precision_recall_report`` ground truth of a dataset (``image_targets``), in ``dataset.image_ids`` order."""
    ground_truth = []
    for index in range(len(dataset.image_ids)):
        boxes, _, ignore = dataset.image_targets(index)
        ground_truth.append({"boxes": boxes, "ignore": ignore})
    return ground_truth


def detections_from_records(records: Sequence[Mapping[str, Any]], image_ids: Sequence[int]) -> list[dict[str, Any]]:
    """Per-image ``{"boxes" xyxy, "scores"}`` (in ``image_ids`` order) from COCO-results records.

    Raises:
        ValueError: a record's ``image_id`` is not one of ``image_ids`` (names the record index).
    """
    position = {int(image_id): i for i, image_id in enumerate(image_ids)}
    boxes: list[list[list[float]]] = [[] for _ in image_ids]
    scores: list[list[float]] = [[] for _ in image_ids]
    for index, record in enumerate(records):
        slot = position.get(int(record["image_id"]))
        if slot is None:
            raise ValueError(f"detection record {index}: image_id {record['image_id']} is not in the dataset")
        x, y, w, h = (float(v) for v in record["bbox"])
        boxes[slot].append([x, y, x + w, y + h])
        scores[slot].append(float(record["score"]))
    return [{"boxes": np.asarray(b, dtype=np.float64).reshape(-1, BOX_COORDS), "scores": np.asarray(s)}
            for b, s in zip(boxes, scores, strict=True)]


def plot_f1_curve(report: Mapping[str, Any], path: str | Path) -> None:
    """Draw precision, recall and F1 against the score threshold, marking the best F1 and the chosen threshold.

    Args:
        report: a :func:`precision_recall_report` result.
        path: the PNG file to write; its folder must exist.
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend, renders with Agg

    curve = report["curve"]
    figure = Figure(figsize=PLOT_INCHES)
    axis = figure.subplots()
    axis.plot(curve["thresholds"], curve["precision"], color="C0", label="precision")
    axis.plot(curve["thresholds"], curve["recall"], color="C1", label="recall")
    axis.plot(curve["thresholds"], curve["f1"], color="C2", linewidth=2, label="F1")
    best, best_at = report["best_f1"], report["best_f1_threshold"]
    axis.axvline(best_at, color="C2", linestyle=":", label=f"best F1 {best:.3f} at {best_at:.2f}")
    chosen = report["score_threshold"]
    axis.axvline(chosen, color="0.4", linestyle="--", label=f"threshold {chosen:g}")
    axis.set_xlim(0.0, 1.0)
    axis.set_ylim(0.0, 1.02)
    axis.set_xlabel("score threshold")
    axis.set_title(f"IoU > {report['iou_threshold']:g}")
    axis.grid(alpha=0.3)
    axis.legend(loc="best", fontsize="small")
    figure.tight_layout()
    figure.savefig(str(path), dpi=PLOT_DPI)
