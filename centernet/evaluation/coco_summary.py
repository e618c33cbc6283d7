"""COCO's summary numbers read from an accumulated ``COCOeval``, at any ``params.maxDets`` limit.

pycocotools' ``summarize()`` looks for 100 detections per image when it reports AP and prints -1 under any other
limit; :func:`summary_stats` computes the same nine numbers from the accumulated arrays at the largest limit, so
that ``eval.max_dets`` (images holding more than 100 objects, docs/inference.md) keeps COCO's definitions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PER_CLASS_AREA = "all"
COCO_SMALL_MAX_DETS = 10  # the middle entry of params.maxDets (AR10)
UNDEFINED = -1.0  # COCOeval's marker for "no ground truth to evaluate against"


def max_dets_thresholds(max_dets: int) -> list[int]:
    """COCOeval's ``params.maxDets``: ``[1, 10, max_dets]`` (COCO's ``[1, 10, 100]`` by default); AP and the
    last recall (``AR100``) count each image's best ``max_dets`` detections.

    Raises:
        ValueError: ``max_dets`` is not above 10.
    """
    if max_dets <= COCO_SMALL_MAX_DETS:
        raise ValueError(f"eval.max_dets must be > {COCO_SMALL_MAX_DETS}, got {max_dets}")
    return [1, COCO_SMALL_MAX_DETS, int(max_dets)]


def summary_stats(evaluator: Any) -> np.ndarray:
    """``COCOeval.stats[0..8]`` (AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100) from the accumulated arrays,
    with AP and the last recall at the largest ``params.maxDets``.

    With COCO's ``[1, 10, 100]`` these are the numbers ``summarize()`` prints; with another last entry
    (``eval.max_dets``) ``summarize()`` would still look for 100 and report AP as -1, so the
    project computes them here the same way (means over the entries that are not -1).
    """
    params = evaluator.params
    precision = np.asarray(evaluator.eval["precision"])  # [T, R, K, A, M]
    recall = np.asarray(evaluator.eval["recall"])  # [T, K, A, M]
    areas = list(params.areaRngLbl)
    ious = np.asarray(params.iouThrs, dtype=np.float64)
    last = len(params.maxDets) - 1

    def mean(values: np.ndarray) -> float:
        values = values[values > UNDEFINED]
        return float(values.mean()) if values.size else UNDEFINED

    def ap(area: str = "all", iou: float | None = None) -> float:
        rows = precision if iou is None else precision[np.isclose(ious, iou)]
        return mean(rows[:, :, :, areas.index(area), last])

    def ar(det_index: int) -> float:
        return mean(recall[:, :, areas.index("all"), det_index])

    return np.array([ap(), ap(iou=0.5), ap(iou=0.75), ap("small"), ap("medium"), ap("large"),
                     ar(0), ar(1), ar(last)], dtype=np.float64)


def per_class_ap(evaluator: Any, dataset: dict[str, Any]) -> dict[str, float | None]:
    """AP (IoU .50:.95, area all, maxDets 100) per category, keyed by name, in category-id order."""
    params = evaluator.params
    precision = np.asarray(evaluator.eval["precision"])  # [T, R, K, A, M]
    area_index = list(params.areaRngLbl).index(PER_CLASS_AREA)
    det_index = len(params.maxDets) - 1  # the largest, eval.max_dets
    names_by_id = {cat["id"]: str(cat.get("name", cat["id"])) for cat in dataset["categories"]}
    per_class: dict[str, float | None] = {}
    for k, category_id in enumerate(params.catIds):
        values = precision[:, :, k, area_index, det_index]  # [T, R]
        values = values[values > UNDEFINED]
        name = names_by_id[category_id]
        if name in per_class:
            name = f"{name} (id {category_id})"
        per_class[name] = float(values.mean()) if values.size else None
    return per_class
