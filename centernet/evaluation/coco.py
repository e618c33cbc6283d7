"""COCO box mAP: conversion of decoded detections to COCO records and evaluation with COCOeval.

``evaluate_coco`` wraps pycocotools' (or faster-coco-eval's) ``COCOeval`` for ``iouType="bbox"`` and
returns the ``metrics.json`` dict::

    {"metric": "coco", "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100",
     "per_class": {category_name: AP}}

The summary values are ``COCOeval.stats[0..8]`` unchanged, as fractions in [0, 1]. COCOeval reports
``-1`` for a metric that is undefined (no ground truth in that area range, or a category without
ground truth); such values are returned as ``None`` (``null`` in JSON). Per-class AP is the mean of
``eval["precision"][:, :, k, area="all", maxDets=100]`` over the entries that are not ``-1``
(IoU .50:.95, 101 recall points), the same quantity as ``stats[0]`` restricted to one category.

Robustness on top of plain COCOeval:
  * zero detections are evaluated (pycocotools' ``loadRes`` fails on an empty list);
  * annotation ids that are missing, non-unique or < 1 are renumbered 1..N on a copy of the
    ground truth (COCOeval stores matched annotation ids with 0 meaning "unmatched", so an
    annotation with id 0 is mis-scored as a miss);
  * the caller's ground truth and detection dicts are never mutated (COCOeval adds keys to both);
  * detections naming an image or category absent from the ground truth raise ``ValueError``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from centernet.decode import NUM_DET_COLUMNS
from centernet.evaluation.coco_summary import UNDEFINED, max_dets_thresholds, per_class_ap, summary_stats
from centernet.evaluation.io import validate_detection_records
from centernet.evaluation.pr_curves import PR_CURVE_IOUS, PRCurves, extract_pr_curves

logger = logging.getLogger(__name__)

SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")  # = stats[0..8]
BBOX_DECIMALS = 2  # 1/100 pixel, as the original CenterNet writes its results
SCORE_DECIMALS = 5
PERCENT = 100.0

GroundTruth = Any  # a pycocotools/faster_coco_eval COCO object, a dataset dict, or a JSON path


def detections_to_coco_records(
    image_id: int,
    file_name: str,
    dets: np.ndarray,
    label_to_category_id: Sequence[int],
    category_names: Sequence[str],
) -> list[dict[str, Any]]:
    """Convert one image's decoded detections to COCO-results records.

    Args:
        image_id: COCO image id of the image.
        file_name: The image's file name (stored in every record for convenience).
        dets: (float ndarray[K, 6]) rows ``[x1, y1, x2, y2, score, label]`` in original-image pixels;
            ``label`` is the contiguous class index in ``[0, C)``. ``K`` may be 0.
        label_to_category_id: ``C`` COCO category ids, indexed by contiguous label.
        category_names: ``C`` category names, indexed by contiguous label.

    Returns:
        ``K`` dicts ``{"image_id", "file_name", "category_id", "category_name", "bbox": [x, y, w, h],
        "score"}`` in row order; bbox rounded to ``BBOX_DECIMALS``, score to ``SCORE_DECIMALS``.

    Raises:
        ValueError: ``dets`` is not ``[K, 6]``, the two sequences differ in length, or a label is not
            an integer in ``[0, C)`` (names the row).
    """
    dets = np.asarray(dets, dtype=np.float64)
    if dets.size == 0:
        return []
    if dets.ndim != 2 or dets.shape[1] != NUM_DET_COLUMNS:
        raise ValueError(
            f"image {image_id} ({file_name}): dets must have shape [K, {NUM_DET_COLUMNS}] "
            f"(x1, y1, x2, y2, score, label), got {list(dets.shape)}"
        )
    num_classes = len(label_to_category_id)
    if len(category_names) != num_classes:
        raise ValueError(
            f"label_to_category_id has {num_classes} entries but category_names has "
            f"{len(category_names)}; they must be indexed by the same contiguous labels"
        )
    labels = dets[:, 5]
    bad = np.flatnonzero((labels != np.round(labels)) | (labels < 0) | (labels >= num_classes))
    if bad.size:
        row = int(bad[0])
        raise ValueError(
            f"image {image_id} ({file_name}): dets row {row} has label {labels[row]}, "
            f"expected an integer in [0, {num_classes})"
        )
    xywh = dets[:, :4].copy()  # [K, 4]
    xywh[:, 2:] -= xywh[:, :2]
    xywh = np.round(xywh, BBOX_DECIMALS)
    scores = np.round(dets[:, 4], SCORE_DECIMALS)
    records = []
    for box, score, label in zip(xywh.tolist(), scores.tolist(), labels.astype(np.int64).tolist()):
        records.append(
            {
                "image_id": int(image_id),
                "file_name": file_name,
                "category_id": int(label_to_category_id[label]),
                "category_name": str(category_names[label]),
                "bbox": box,
                "score": score,
            }
        )
    return records


def _load_gt_dataset(ground_truth: GroundTruth) -> dict[str, Any]:
    """Return the COCO dataset dict behind ``ground_truth`` (not copied)."""
    if isinstance(ground_truth, (str, os.PathLike)):
        path = Path(ground_truth)
        with path.open(encoding="utf-8") as handle:
            try:
                dataset = json.load(handle)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from error
        source = str(path)
    elif isinstance(ground_truth, Mapping):
        dataset, source = ground_truth, "ground-truth dict"
    elif isinstance(getattr(ground_truth, "dataset", None), Mapping):
        dataset, source = ground_truth.dataset, "ground-truth COCO object"
    else:
        raise TypeError(
            f"ground_truth must be a COCO object, a dataset dict or a JSON path, got {type(ground_truth).__name__}"
        )
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(key), list):
            raise ValueError(f"{source}: expected a COCO dataset with a '{key}' list")
    return dict(dataset)


def _restrict_categories(dataset: dict[str, Any], category_ids: Sequence[int] | None) -> dict[str, Any]:
    """Keep only the given categories and their annotations (a shallow copy); ``None`` keeps all."""
    if category_ids is None:
        return dataset
    keep = set(category_ids)
    unknown = keep - {cat["id"] for cat in dataset["categories"]}
    if unknown:
        raise ValueError(f"category ids {sorted(unknown)} are not in the ground truth")
    restricted = dict(dataset)
    restricted["categories"] = [cat for cat in dataset["categories"] if cat["id"] in keep]
    restricted["annotations"] = [ann for ann in dataset["annotations"] if ann["category_id"] in keep]
    return restricted


def _prepare_gt_dataset(dataset: dict[str, Any]) -> dict[str, Any]:
    """Shallow-copy the annotations, renumbering ids to 1..N if any is missing, < 1 or repeated.

    Also fills ``iscrowd = 0`` and ``area = w * h`` where an annotation lacks them (COCOeval needs both).
    """
    annotations = dataset["annotations"]
    ids = [ann.get("id") for ann in annotations]
    renumber = any(i is None or i < 1 for i in ids) or len(set(ids)) != len(ids)
    if renumber:
        logger.info(
            "renumbering %d ground-truth annotation ids to 1..N (pycocotools needs unique ids >= 1)", len(annotations)
        )
    prepared = []
    for index, ann in enumerate(annotations):
        new = dict(ann)
        if renumber:
            new["id"] = index + 1
        new.setdefault("iscrowd", 0)
        if "area" not in new:
            new["area"] = float(new["bbox"][2]) * float(new["bbox"][3])
        prepared.append(new)
    dataset["annotations"] = prepared
    return dataset


def _prepare_detections(detections: list[dict[str, Any]], dataset: dict[str, Any]) -> list[dict[str, Any]]:
    """Validate detections against the ground truth and copy them to minimal fresh records."""
    validate_detection_records(detections, "detections")
    image_ids = {img["id"] for img in dataset["images"]}
    category_ids = {cat["id"] for cat in dataset["categories"]}
    records = []
    for index, det in enumerate(detections):
        if det["image_id"] not in image_ids:
            raise ValueError(
                f"detections[{index}]: image_id {det['image_id']} is not in the ground truth "
                f"({len(image_ids)} images, e.g. ids {sorted(image_ids)[:5]})"
            )
        if det["category_id"] not in category_ids:
            raise ValueError(
                f"detections[{index}]: category_id {det['category_id']} is not in the ground "
                f"truth (valid ids: {sorted(category_ids)})"
            )
        records.append(
            {
                "image_id": int(det["image_id"]),
                "category_id": int(det["category_id"]),
                "bbox": [float(v) for v in det["bbox"]],
                "score": float(det["score"]),
            }
        )
    return records


def _empty_results(coco_cls: type, gt: Any) -> Any:
    """A results COCO object with no detections (what ``loadRes([])`` should have returned)."""
    res = coco_cls()
    res.dataset = {
        "images": list(gt.dataset["images"]),
        "categories": copy.deepcopy(gt.dataset["categories"]),
        "annotations": [],
    }
    res.createIndex()
    return res


def _run_pycocotools(dataset: dict[str, Any], records: list[dict[str, Any]], verbose: bool, max_dets: int) -> Any:
    """Run pycocotools' COCOeval (bbox) and return the evaluator after ``summarize()``."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO()
    gt.dataset = dataset
    gt.createIndex()
    dt = gt.loadRes(records) if records else _empty_results(COCO, gt)
    evaluator = COCOeval(gt, dt, iouType="bbox")
    evaluator.params.maxDets = max_dets_thresholds(max_dets)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator


def _run_faster_coco_eval(dataset: dict[str, Any], records: list[dict[str, Any]], verbose: bool,
                          max_dets: int) -> Any:
    """Run faster-coco-eval's COCOeval_faster (bbox) and return the evaluator after ``summarize()``."""
    from faster_coco_eval import COCO, COCOeval_faster

    report = print if verbose else logger.debug
    gt = COCO(dataset, print_function=report)
    dt = gt.loadRes(records) if records else _empty_results(COCO, gt)
    evaluator = COCOeval_faster(gt, dt, iouType="bbox", print_function=report)
    evaluator.params.maxDets = max_dets_thresholds(max_dets)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator


BACKENDS: dict[str, Callable[[dict[str, Any], list[dict[str, Any]], bool, int], Any]] = {
    "pycocotools": _run_pycocotools,
    "faster_coco_eval": _run_faster_coco_eval,
}


def _defined(value: float) -> float | None:
    """COCOeval's -1 (undefined) -> None, anything else -> Python float."""
    return None if value <= UNDEFINED else float(value)


def evaluate_coco(
    ground_truth: GroundTruth,
    detections: list[dict[str, Any]],
    *,
    backend: str = "pycocotools",
    quiet: bool = True,
    category_ids: Sequence[int] | None = None,
    max_dets: int = 100,
) -> dict[str, Any]:
    """Evaluate box detections with COCO mAP.

    Args:
        ground_truth: A pycocotools (or faster_coco_eval) ``COCO`` object, a COCO dataset dict, or the
            path of a COCO annotation JSON file. It is not modified.
        detections: COCO-results records ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``
            in original-image pixels (extra keys ignored; not modified). May be empty.
        backend: ``"pycocotools"`` or ``"faster_coco_eval"`` (same numbers, faster on large sets).
        quiet: Suppress the evaluator's stdout prints (the summary goes to the debug log instead).
        category_ids: evaluate only these categories (the ``data.classes`` a model was trained on);
            ``None`` = every category of the ground truth.
        max_dets: AP and ``AR100`` count each image's best this many detections (COCO: 100).

    Returns:
        ``{"metric": "coco", "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100",
        "per_class": {category_name: AP}}``: fractions in [0, 1] equal to ``COCOeval.stats[0..8]``;
        ``None`` where COCOeval has nothing to evaluate (reports -1), e.g. a category without ground truth.
        Zero detections give 0.0 for every defined metric.

    Raises:
        ValueError: Unknown backend, malformed detection record, or a detection whose image_id or
            category_id is not in the ground truth (names the record index and the id).
    """
    return _evaluate(ground_truth, detections, backend=backend, quiet=quiet, category_ids=category_ids,
                     max_dets=max_dets)[0]


def evaluate_coco_with_curves(
    ground_truth: GroundTruth,
    detections: list[dict[str, Any]],
    *,
    backend: str = "pycocotools",
    quiet: bool = True,
    category_ids: Sequence[int] | None = None,
    iou_thresholds: Sequence[float] = PR_CURVE_IOUS,
    max_dets: int = 100,
) -> tuple[dict[str, Any], PRCurves]:
    """:func:`evaluate_coco` plus the per-class precision/recall curves it averaged.

    Args:
        ground_truth, detections, backend, quiet, category_ids, max_dets: as for :func:`evaluate_coco`.
        iou_thresholds: the IoU thresholds of the curves (each one of 0.50, 0.55, ..., 0.95).

    Returns:
        ``(metrics, curves)``: the metrics dict of :func:`evaluate_coco` and the
        :class:`~centernet.evaluation.pr_curves.PRCurves` (area all, ``max_dets`` detections per image).
    """
    metrics, evaluator, dataset = _evaluate(
        ground_truth, detections, backend=backend, quiet=quiet, category_ids=category_ids, max_dets=max_dets
    )
    names_by_id = {cat["id"]: str(cat.get("name", cat["id"])) for cat in dataset["categories"]}
    class_names = [names_by_id[category_id] for category_id in evaluator.params.catIds]
    return metrics, extract_pr_curves(evaluator, class_names, iou_thresholds)


def _evaluate(
    ground_truth: GroundTruth,
    detections: list[dict[str, Any]],
    *,
    backend: str,
    quiet: bool,
    category_ids: Sequence[int] | None,
    max_dets: int = 100,
) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """Run COCOeval; return ``(metrics, the accumulated evaluator, the evaluated ground-truth dict)``."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown COCO evaluation backend {backend!r}; valid: {sorted(BACKENDS)}")
    dataset = _prepare_gt_dataset(_restrict_categories(_load_gt_dataset(ground_truth), category_ids))
    records = _prepare_detections(detections, dataset)
    captured = io.StringIO()
    redirect = contextlib.redirect_stdout(captured) if quiet else contextlib.nullcontext()
    with redirect:
        evaluator = BACKENDS[backend](dataset, records, not quiet, max_dets)
    if captured.getvalue():
        logger.debug("%s output:\n%s", backend, captured.getvalue())
    stats = summary_stats(evaluator)
    metrics: dict[str, Any] = {"metric": "coco"}
    for index, key in enumerate(SUMMARY_KEYS):
        metrics[key] = _defined(stats[index])
    metrics["per_class"] = per_class_ap(evaluator, dataset)
    return metrics, evaluator, dataset


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * PERCENT:.1f}"


def format_metrics_table(metrics: Mapping[str, Any]) -> str:
    """Render a metrics dict as a fixed-width text table (values in percent, 1 decimal).

    Args:
        metrics: A ``metrics.json`` dict: ``"metric"`` (name), scalar metrics (``AP`` ... ``AR100`` for
            COCO, ``mAP`` for VOC) and ``"per_class"`` ``{name: AP}``. ``None`` prints as ``-``.

    Returns:
        A multi-line string: the summary metrics in dict order, then one row per class.
    """
    scalars = [
        (key, value)
        for key, value in metrics.items()
        if key not in ("metric", "per_class") and (value is None or isinstance(value, (int, float)))
    ]
    per_class = dict(metrics.get("per_class") or {})
    width = max([len("class"), *(len(key) for key, _ in scalars), *(len(name) for name in per_class)])
    value_width = len("value (%)")
    lines = [f"{'metric':<{width}}  {'value (%)':>{value_width}}  ({metrics.get('metric', '?')})"]
    lines += [f"{key:<{width}}  {_percent(value):>{value_width}}" for key, value in scalars]
    if per_class:
        lines.append(f"{'class':<{width}}  {'AP (%)':>{value_width}}")
        lines += [f"{name:<{width}}  {_percent(value):>{value_width}}" for name, value in per_class.items()]
    return "\n".join(lines)
