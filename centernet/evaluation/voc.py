"""Pascal VOC detection mAP (VOC07 11-point AP and VOC2010+ area AP).

``evaluate_voc`` returns the ``metrics.json`` dict::

    {"metric": "voc07" | "voc", "mAP": float | None, "per_class": {class_name: AP | None}}

with all values as fractions in [0, 1]. The rules are those of the official VOC devkit
(``VOCevaldet.m``), implemented here from their description:

  * Per class, detections are ranked by score, highest first. Ties keep the order in which the
    detections were given (a stable sort, as MATLAB's ``sort`` in the devkit); so among equal
    scores the earlier record is matched first.
  * Each detection is compared with *all* ground-truth boxes of its class in its image and takes
    the one with the highest IoU (the first one on an exact IoU tie). If that IoU is
    ``>= iou_threshold`` (the devkit's ``>=``; the py-faster-rcnn Python port uses ``>``):
    a ``difficult`` box makes the detection *ignored* (neither TP nor FP); an unclaimed box is
    claimed and the detection is a TP; an already claimed box makes it an FP (duplicate), even if
    another unclaimed box also overlaps it enough (the devkit does not fall back to the
    second-best box). Below the threshold, or with no box of its class in the image, it is an FP.
  * recall = TP / (number of non-difficult ground-truth boxes); precision = TP / (TP + FP),
    cumulated over the ranked, non-ignored detections.
  * ``use_07_metric=True``: 11-point AP, the mean over t in {0, 0.1, ..., 1} of the highest
    precision at recall >= t (0 when no such point). ``False``: the area under the monotone
    precision envelope (precision made non-increasing from the right), summed over the recall
    change points, with the curve closed at recall 0 and 1 by precision 0.
  * A class without non-difficult ground truth has AP ``None`` (the devkit would divide by zero);
    it is left out of the mean. ``mAP`` is the mean over classes with a defined AP, ``None`` when
    there is none. A class with ground truth but no detections has AP 0.

Box convention: VOC annotations are inclusive integer pixel indices (``xmax`` is the last pixel
covered), so a box ``[x1, x2]`` spans ``x2 - x1 + 1`` pixels and the devkit computes widths,
heights, areas and intersections with that ``+1``. ``VOC_PIXEL_OFFSET`` names it; passing
``pixel_offset=0`` gives the continuous-coordinate IoU instead. Ground truth and detections must
use the same 0-based pixel coordinates (the loader subtracts 1 from ``xmin``/``ymin``; the ``+1``
convention is invariant to shifting both boxes).
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from centernet.evaluation.io import validate_detection_records

logger = logging.getLogger(__name__)

VOC_PIXEL_OFFSET = 1.0  # inclusive pixel indices: a box [x1, x2] covers x2 - x1 + 1 pixels
DEFAULT_IOU_THRESHOLD = 0.5
VOC07_RECALL_STEPS = 10  # recall thresholds i / 10 for i = 0..10 (exact decimals, not cumulated 0.1 steps)
BOX_COORDS = 4
GT_KEYS = ("image_id", "boxes", "labels")  # "difficult" is optional (all False when missing)
DET_KEYS = ("image_id", "label", "bbox", "score")
NO_MATCH = -1


def voc_box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray, *, pixel_offset: float = VOC_PIXEL_OFFSET) -> np.ndarray:
    """Pairwise IoU with the VOC inclusive-pixel convention.

    Args:
        boxes_a: (float ndarray[D, 4]) ``[x1, y1, x2, y2]`` boxes.
        boxes_b: (float ndarray[G, 4]) ``[x1, y1, x2, y2]`` boxes.
        pixel_offset: Added to every width/height (``VOC_PIXEL_OFFSET`` = 1 for inclusive pixel
            indices, 0 for continuous coordinates). Negative overlaps are clipped to 0.

    Returns:
        (float64 ndarray[D, G]) IoU of every pair.
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, BOX_COORDS)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, BOX_COORDS)
    inter_w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + pixel_offset
    inter_h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + pixel_offset
    inter = np.clip(inter_w, 0.0, None) * np.clip(inter_h, 0.0, None)  # [D, G]
    area_a = (a[:, 2] - a[:, 0] + pixel_offset) * (a[:, 3] - a[:, 1] + pixel_offset)  # [D]
    area_b = (b[:, 2] - b[:, 0] + pixel_offset) * (b[:, 3] - b[:, 1] + pixel_offset)  # [G]
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou


def _precision_envelope(precision: np.ndarray) -> np.ndarray:
    """Make precision non-increasing in rank: p[i] = max(p[i:]). Shape preserved."""
    return np.maximum.accumulate(precision[::-1])[::-1]


def voc07_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2007 11-point interpolated AP.

    Args:
        recall: (float ndarray[K]) non-decreasing recall after each ranked detection.
        precision: (float ndarray[K]) precision after each ranked detection.

    Returns:
        Mean over ``t = i / 10, i = 0..10`` of ``max(precision[recall >= t])`` (0 when empty).
    """
    recall = np.asarray(recall, dtype=np.float64)
    envelope = _precision_envelope(np.asarray(precision, dtype=np.float64))
    thresholds = np.arange(VOC07_RECALL_STEPS + 1) / VOC07_RECALL_STEPS  # [11]
    first = np.searchsorted(recall, thresholds, side="left")  # first rank with recall >= t
    padded = np.append(envelope, 0.0)  # rank K = "no such point" -> precision 0
    return float(padded[first].mean())


def voc_area_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC2010+ AP: area under the monotone precision envelope.

    Args:
        recall: (float ndarray[K]) non-decreasing recall after each ranked detection.
        precision: (float ndarray[K]) precision after each ranked detection.

    Returns:
        ``sum((r[i+1] - r[i]) * p_env[i+1])`` over the points where recall changes, with the curve
        extended by (recall 0, precision 0) and (recall 1, precision 0).
    """
    mrec = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64), [1.0]])
    mpre = _precision_envelope(np.concatenate([[0.0], np.asarray(precision, dtype=np.float64), [0.0]]))
    change = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[change + 1] - mrec[change]) * mpre[change + 1]))


AP_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {"voc07": voc07_ap, "voc": voc_area_ap}


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _parse_ground_truth(ground_truth: Sequence[Mapping[str, Any]], num_classes: int) -> dict[str, Any]:
    """Validate and concatenate the per-image ground truth (boxes [G, 4], labels/difficult/image [G])."""
    image_index: dict[Any, int] = {}
    boxes, labels, difficult, image = [], [], [], []
    for index, entry in enumerate(ground_truth):
        where = f"ground_truth[{index}]"
        if not isinstance(entry, Mapping) or any(key not in entry for key in GT_KEYS):
            raise ValueError(f"{where}: expected a dict with keys {list(GT_KEYS)} (+ optional 'difficult')")
        image_id = entry["image_id"]
        if image_id in image_index:
            raise ValueError(f"{where}: image_id {image_id!r} repeats ground_truth[{image_index[image_id]}]")
        image_index[image_id] = index
        box = np.asarray(entry["boxes"], dtype=np.float64)
        box = box.reshape(0, BOX_COORDS) if box.size == 0 else box
        count = box.shape[0]
        if box.ndim != 2 or box.shape[1] != BOX_COORDS or not np.isfinite(box).all():
            raise ValueError(f"{where} (image {image_id!r}): 'boxes' must be finite [N, 4] xyxy, got {list(box.shape)}")
        label = np.asarray(entry["labels"]).reshape(-1)
        flag = np.asarray(entry.get("difficult", np.zeros(count, dtype=bool))).reshape(-1)
        if label.shape[0] != count or flag.shape[0] != count:
            raise ValueError(
                f"{where} (image {image_id!r}): 'labels' ({label.shape[0]}) and 'difficult' ({flag.shape[0]}) "
                f"must have one entry per box ({count})"
            )
        if ((label != np.round(label)) | (label < 0) | (label >= num_classes)).any():
            raise ValueError(f"{where} (image {image_id!r}): 'labels' must be integers in [0, {num_classes})")
        boxes.append(box)
        labels.append(label.astype(np.int64))
        difficult.append(flag.astype(bool))
        image.append(np.full(count, index, dtype=np.int64))
    return {
        "image_index": image_index,
        "boxes": np.concatenate(boxes) if boxes else np.zeros((0, BOX_COORDS)),
        "labels": np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64),
        "difficult": np.concatenate(difficult) if difficult else np.zeros(0, dtype=bool),
        "image": np.concatenate(image) if image else np.zeros(0, dtype=np.int64),
    }


def _parse_detections(
    detections: Sequence[Mapping[str, Any]], image_index: Mapping[Any, int], num_classes: int
) -> dict[str, np.ndarray]:
    """Validate the detection records and return arrays image [D], label [D], boxes [D, 4], score [D]."""
    image, label, boxes, score = [], [], [], []
    for index, det in enumerate(detections):
        where = f"detections[{index}]"
        if not isinstance(det, Mapping) or any(key not in det for key in DET_KEYS):
            hint = (
                "; COCO-results records ('category_id', bbox [x, y, w, h]) go through coco_records_to_voc_detections"
                if isinstance(det, Mapping) and "category_id" in det
                else ""
            )
            raise ValueError(f"{where}: expected a dict with keys {list(DET_KEYS)}{hint}")
        if det["image_id"] not in image_index:
            raise ValueError(f"{where}: image_id {det['image_id']!r} is not in the ground truth")
        if not _is_int(det["label"]) or not 0 <= det["label"] < num_classes:
            raise ValueError(f"{where}: 'label' must be an integer in [0, {num_classes}), got {det['label']!r}")
        bbox = np.asarray(det["bbox"], dtype=np.float64).reshape(-1)
        if bbox.shape[0] != BOX_COORDS or not np.isfinite(bbox).all():
            raise ValueError(f"{where}: 'bbox' must be 4 finite numbers [x1, y1, x2, y2], got {det['bbox']!r}")
        if not isinstance(det["score"], numbers.Real) or not math.isfinite(float(det["score"])):
            raise ValueError(f"{where}: 'score' must be a finite number, got {det['score']!r}")
        image.append(image_index[det["image_id"]])
        label.append(int(det["label"]))
        boxes.append(bbox)
        score.append(float(det["score"]))
    return {
        "image": np.asarray(image, dtype=np.int64),
        "label": np.asarray(label, dtype=np.int64),
        "boxes": np.asarray(boxes, dtype=np.float64).reshape(-1, BOX_COORDS),
        "score": np.asarray(score, dtype=np.float64),
    }


def _best_gt(
    det_image: np.ndarray, det_boxes: np.ndarray, gt_image: np.ndarray, gt_boxes: np.ndarray, pixel_offset: float
) -> tuple[np.ndarray, np.ndarray]:
    """For each detection, the index of its highest-IoU GT of the same image (NO_MATCH if none) and that IoU.

    ``gt_image`` must be sorted (ground truth is concatenated in image order). Returns int64 [D], float64 [D].
    """
    best = np.full(det_image.shape[0], NO_MATCH, dtype=np.int64)
    best_iou = np.zeros(det_image.shape[0], dtype=np.float64)
    by_image = np.argsort(det_image, kind="stable")
    images, starts = np.unique(det_image[by_image], return_index=True)
    ends = np.append(starts[1:], by_image.shape[0])
    gt_starts = np.searchsorted(gt_image, images, side="left")
    gt_ends = np.searchsorted(gt_image, images, side="right")
    for start, end, gt_start, gt_end in zip(starts, ends, gt_starts, gt_ends):
        if gt_end == gt_start:
            continue
        rows = by_image[start:end]
        iou = voc_box_iou(det_boxes[rows], gt_boxes[gt_start:gt_end], pixel_offset=pixel_offset)  # [d, g]
        column = iou.argmax(axis=1)  # first maximum on ties
        best[rows] = gt_start + column
        best_iou[rows] = iou[np.arange(rows.shape[0]), column]
    return best, best_iou


def _class_pr(
    gt: Mapping[str, np.ndarray], dets: Mapping[str, np.ndarray], label: int, iou_threshold: float, pixel_offset: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Ranked recall [K] and precision [K] of one class (ignored detections removed) and its positive count."""
    gt_sel = gt["labels"] == label
    gt_image, gt_boxes, gt_difficult = gt["image"][gt_sel], gt["boxes"][gt_sel], gt["difficult"][gt_sel]
    num_positives = int((~gt_difficult).sum())
    det_sel = np.flatnonzero(dets["label"] == label)
    order = det_sel[np.argsort(-dets["score"][det_sel], kind="stable")]  # score descending, ties in input order
    best, best_iou = _best_gt(dets["image"][order], dets["boxes"][order], gt_image, gt_boxes, pixel_offset)
    matched = (best != NO_MATCH) & (best_iou >= iou_threshold)
    ignored = matched & gt_difficult[np.where(matched, best, 0)] if gt_boxes.shape[0] else np.zeros_like(matched)
    claims = np.flatnonzero(matched & ~ignored)  # ranks that claim a non-difficult GT, in rank order
    is_tp = np.zeros(order.shape[0], dtype=bool)
    _, first_claim = np.unique(best[claims], return_index=True)  # the first rank claiming each GT wins
    is_tp[claims[first_claim]] = True
    kept = is_tp[~ignored]  # [K] ranked TP flags of the detections that count
    tp = np.cumsum(kept)
    fp = np.cumsum(~kept)
    recall = tp / num_positives if num_positives else np.zeros(kept.shape[0])
    precision = tp / np.maximum(tp + fp, 1)
    return recall, precision, num_positives


def evaluate_voc(
    ground_truth: Sequence[Mapping[str, Any]],
    detections: Sequence[Mapping[str, Any]],
    *,
    class_names: Sequence[str],
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    use_07_metric: bool,
    pixel_offset: float = VOC_PIXEL_OFFSET,
) -> dict[str, Any]:
    """Pascal VOC mAP with the devkit rules described in the module docstring.

    Args:
        ground_truth: One dict per image: ``image_id`` (any hashable, unique), ``boxes``
            (float [N, 4] ``[x1, y1, x2, y2]`` 0-based inclusive pixels), ``labels`` (int [N],
            contiguous indices into ``class_names``), ``difficult`` (bool [N]; optional, default all
            False). Images without boxes are allowed.
        detections: Records ``{"image_id", "label" (contiguous int), "bbox": [x1, y1, x2, y2] (same
            pixel convention as the ground truth), "score"}``. For COCO-results records use
            ``coco_records_to_voc_detections`` first.
        class_names: ``C`` class names, indexed by label.
        iou_threshold: A detection matches its best GT when IoU >= this.
        use_07_metric: True for the VOC2007 11-point AP (``"voc07"``), False for the VOC2010+ area
            AP (``"voc"``).
        pixel_offset: Width/height offset of the IoU (``VOC_PIXEL_OFFSET`` = 1: inclusive pixels).

    Returns:
        ``{"metric": "voc07" | "voc", "mAP": float | None, "per_class": {name: float | None}}``;
        ``None`` for classes without non-difficult ground truth (and mAP when every class is None).

    Raises:
        ValueError: A malformed ground-truth entry or detection record (names its index), a repeated
            ground-truth image id, or a detection on an image absent from the ground truth.
    """
    metric = "voc07" if use_07_metric else "voc"
    ap_function = AP_FUNCTIONS[metric]
    num_classes = len(class_names)
    gt = _parse_ground_truth(ground_truth, num_classes)
    dets = _parse_detections(detections, gt["image_index"], num_classes)
    per_class: dict[str, float | None] = {}
    for label, name in enumerate(class_names):
        recall, precision, num_positives = _class_pr(gt, dets, label, iou_threshold, pixel_offset)
        if num_positives == 0:
            logger.debug("class %r has no non-difficult ground truth; its AP is undefined (None)", name)
            per_class[str(name)] = None
        else:
            per_class[str(name)] = ap_function(recall, precision)
    defined = [ap for ap in per_class.values() if ap is not None]
    mean_ap = float(np.mean(defined)) if defined else None
    return {"metric": metric, "mAP": mean_ap, "per_class": per_class}


def coco_records_to_voc_detections(
    records: Sequence[Mapping[str, Any]], category_id_to_label: Mapping[int, int], *, source: str = "detections"
) -> list[dict[str, Any]]:
    """Convert COCO-results records (``detections.json``) to ``evaluate_voc`` detection records.

    The box is converted with ``x2 = x + w``, ``y2 = y + h`` and no ``+-1``: this exactly inverts
    ``detections_to_coco_records`` (which writes ``w = x2 - x1``), so the boxes come back in the
    pixel convention the model's detections were in (the ground truth's 0-based pixels).

    Args:
        records: COCO-results records ``{"image_id", "category_id", "bbox": [x, y, w, h], "score", ...}``.
        category_id_to_label: Maps each category id to its contiguous label (index into ``class_names``).
        source: Name of the records' origin used in error messages (e.g. the file path).

    Returns:
        One ``{"image_id", "label", "bbox": [x1, y1, x2, y2], "score"}`` dict per record, in order.

    Raises:
        ValueError: A malformed record or a ``category_id`` missing from the mapping (names the index).
    """
    records = validate_detection_records(list(records), source)
    converted = []
    for index, record in enumerate(records):
        category_id = record["category_id"]
        if category_id not in category_id_to_label:
            raise ValueError(
                f"{source}: detection record {index}: category_id {category_id} is not in the label mapping "
                f"(known ids: {sorted(category_id_to_label)})"
            )
        x, y, w, h = (float(v) for v in record["bbox"])
        converted.append(
            {
                "image_id": record["image_id"],
                "label": int(category_id_to_label[category_id]),
                "bbox": [x, y, x + w, y + h],
                "score": float(record["score"]),
            }
        )
    return converted
