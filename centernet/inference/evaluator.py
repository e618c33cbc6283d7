"""Score a model (or a detections file) on a COCO-format dataset and write ``eval/`` outputs."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from centernet.data.base import DetectionDataset
from centernet.data.normalize import ImageNormalizer
from centernet.engine.distributed import all_gather_objects, broadcast_object, is_distributed
from centernet.evaluation import (
    F1_CURVE_FILENAME,
    PR_CURVES_FILENAME,
    coco_records_to_voc_detections,
    detections_to_coco_records,
    evaluate_coco_with_curves,
    evaluate_voc,
    format_metrics_table,
    plot_f1_curve,
    plot_pr_curves,
    precision_recall_report,
    write_eval_outputs,
)
from centernet.evaluation.precision_recall import (
    DEFAULT_IOU_THRESHOLD,
    DEFAULT_SCORE_THRESHOLD,
    detections_from_records,
    ground_truth_from_dataset,
)
from centernet.inference.preview import PREDICTIONS_FILENAME, write_predictions_preview
from centernet.inference.runner import run_inference
from centernet.inference.sliced_runner import run_sliced_inference
from centernet.inference.slicing import SliceSettings

logger = logging.getLogger(__name__)

# The precision/recall figures added to the metrics (with ``@{pr_iou}`` after the first five); the
# report's counts and thresholds go under ``metrics["precision_recall"]`` (docs/evaluation.md).
PR_SCALARS = ("precision", "recall", "f1", "image_mean_precision", "image_mean_recall")
PR_BEST = ("best_f1", "best_f1_threshold")
PR_DETAILS = ("score_threshold", "iou_threshold", "tp", "fp", "fn", "ignored", "objects", "detections", "per_image")


@dataclass(frozen=True)
class SlicedInput:
    """How a val set of large images is run: the windows, and the model's input size and channel order
    (for the optional whole-image pass and the windows' colours)."""

    settings: SliceSettings
    input_size: tuple[int, int]
    channel_order: str


def detections_for_dataset(
    dataset: DetectionDataset, results: list[tuple[dict[str, Any], np.ndarray]]
) -> list[dict[str, Any]]:
    """COCO result records (with ``file_name`` and ``category_name``) for per-image detections."""
    records: list[dict[str, Any]] = []
    for meta, dets in results:
        records.extend(
            detections_to_coco_records(
                int(meta["image_id"]),
                str(meta["file_name"]),
                dets,
                dataset.label_to_category_id,
                dataset.class_names,
            )
        )
    return records


def score_detections(
    dataset: DetectionDataset,
    records: list[dict[str, Any]],
    *,
    metric: str,
    backend: str,
    out_dir: Path | None,
    provenance: Mapping[str, Any] | None = None,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    pr_iou: float = DEFAULT_IOU_THRESHOLD,
    max_dets: int = 100,
) -> dict[str, Any]:
    """Metrics of ``records`` against ``dataset``; writes ``metrics.json``/``detections.json`` to ``out_dir``
    (and ``predictions.png``, the first val images with ground truth and predictions; for the COCO metric
    also ``pr_curves.png``, per-class precision/recall at IoU 0.5 and 0.75, and ``f1_curve.png``).

    For the COCO metric the metrics also hold DeepForest-style box precision/recall (docs/evaluation.md):
    ``precision@{pr_iou}``, ``recall@…``, ``f1@…``, ``image_mean_precision@…``, ``image_mean_recall@…``,
    ``best_f1``, ``best_f1_threshold`` and the counts under ``precision_recall`` (pooled, and per image
    under ``precision_recall.per_image`` with each image's ``image_id`` and ``file_name``).

    Args:
        dataset: the evaluated dataset (its ground truth and class mapping).
        records: COCO-results records in original-image pixels.
        metric: ``coco`` (COCO mAP over the trained categories) | ``voc07`` (11-point AP) | ``voc`` (area AP).
        backend: COCO evaluation backend (``pycocotools`` | ``faster_coco_eval``).
        out_dir: where to write the two JSON files (None: do not write).
        provenance: what produced the detections (checkpoint, epoch, test-time options), written into
            ``metrics.json`` next to the metrics (not returned).
        score_threshold: precision/recall count the detections scoring at least this (``eval.score_threshold``).
        pr_iou: precision/recall pair a detection and an object at IoU above this (``eval.pr_iou``).
        max_dets: COCO AP counts each image's best this many detections (``eval.max_dets``).
    """
    if metric == "coco":
        ground_truth = getattr(dataset, "coco", None)
        if ground_truth is None:
            raise ValueError(
                "eval.metric=coco needs COCO ground truth; for a VOC-format set use eval.metric=voc07|voc "
                "or convert it with datasets/voc2coco.py"
            )
        metrics, curves = evaluate_coco_with_curves(
            ground_truth, records, backend=backend, category_ids=dataset.label_to_category_id, max_dets=max_dets
        )
        report = precision_recall_report(
            ground_truth_from_dataset(dataset), detections_from_records(records, dataset.image_ids),
            iou_threshold=pr_iou, score_threshold=score_threshold,
        )
        for image_id, row in zip(dataset.image_ids, report["per_image"], strict=True):  # name each image
            row.update(image_id=int(image_id), file_name=str(ground_truth.imgs[int(image_id)]["file_name"]))
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            plot_pr_curves(curves, out_dir / PR_CURVES_FILENAME)
            plot_f1_curve(report, out_dir / F1_CURVE_FILENAME)
        table = format_metrics_table(metrics)
        metrics = {**metrics, **precision_recall_fields(report)}
        logger.info("evaluation on %d images:\n%s\n%s", len(dataset), table, format_precision_recall(metrics))
    else:
        metrics = _score_voc(dataset, records, use_07_metric=metric == "voc07")
        logger.info("evaluation on %d images:\n%s", len(dataset), format_metrics_table(metrics))
    if out_dir is not None:
        write_eval_outputs(out_dir, {**metrics, **(provenance or {})}, records)
        write_predictions_preview(dataset, records, out_dir / PREDICTIONS_FILENAME)
    return metrics


def precision_recall_fields(report: dict[str, Any]) -> dict[str, Any]:
    """The metrics entries of a :func:`precision_recall_report`: its scalars and a ``precision_recall`` dict."""
    iou = f"{report['iou_threshold']:g}"
    fields: dict[str, Any] = {f"{name}@{iou}": float(report[f"{name}@{iou}"]) for name in PR_SCALARS}
    fields.update({name: float(report[name]) for name in PR_BEST})
    fields["precision_recall"] = {name: report[name] for name in PR_DETAILS}
    return fields


def format_precision_recall(metrics: dict[str, Any]) -> str:
    """One line: precision, recall and F1 at the score threshold, and the best F1 with its threshold."""
    details = metrics["precision_recall"]
    iou = f"{details['iou_threshold']:g}"
    return (
        f"box precision {metrics[f'precision@{iou}']:.3f}, recall {metrics[f'recall@{iou}']:.3f}, "
        f"F1 {metrics[f'f1@{iou}']:.3f} at score >= {details['score_threshold']:g}, IoU > {iou} "
        f"({details['tp']} TP, {details['fp']} FP, {details['fn']} FN); "
        f"best F1 {metrics['best_f1']:.3f} at score >= {metrics['best_f1_threshold']:g}"
    )


def check_scorable(dataset: DetectionDataset, metric: str, name: str | None = None) -> None:
    """Raise now, not after an epoch of training, when ``metric`` cannot score ``dataset``.

    Raises:
        ValueError: a VOC metric for a set without VOC ground truth, or COCO for one without COCO ground truth.
    """
    where = "data.val" if name is None else f"data.val[{name}]"
    if metric in ("voc07", "voc") and getattr(dataset, "ground_truth_for_eval", None) is None:
        raise ValueError(f"eval.metric={metric} needs a VOC-format dataset, but {where} is COCO-format; "
                         "use eval.metric=coco")
    if metric == "coco" and getattr(dataset, "coco", None) is None:
        raise ValueError(f"eval.metric=coco needs COCO ground truth, which {where} does not provide")


def _score_voc(dataset: DetectionDataset, records: list[dict[str, Any]], *, use_07_metric: bool) -> dict[str, Any]:
    """VOC AP; boxes are 0-based with exclusive ends on both sides, which with ``pixel_offset=0`` gives the
    same IoU as the devkit's ``+1`` rule on inclusive pixel boxes."""
    ground_truth_for_eval = getattr(dataset, "ground_truth_for_eval", None)
    if ground_truth_for_eval is None:
        raise ValueError(
            f"eval.metric={'voc07' if use_07_metric else 'voc'} needs a VOC-format dataset (data.val.type: voc)"
        )
    detections = coco_records_to_voc_detections(records, dataset.category_id_to_label)
    return evaluate_voc(
        ground_truth_for_eval(),
        detections,
        class_names=dataset.class_names,
        use_07_metric=use_07_metric,
        pixel_offset=0.0,
    )


def evaluate_model(
    model: nn.Module,
    dataset: DetectionDataset,
    loader: torch.utils.data.DataLoader | None,
    normalizer: ImageNormalizer,
    *,
    device: torch.device,
    topk: int,
    flip: bool,
    amp: str,
    metric: str,
    backend: str,
    out_dir: Path | None,
    progress: bool = True,
    provenance: Mapping[str, Any] | None = None,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    pr_iou: float = DEFAULT_IOU_THRESHOLD,
    max_dets: int = 100,
    sliced: SlicedInput | None = None,
) -> dict[str, Any]:
    """Run the model over ``loader`` and score it (see :func:`score_detections`).

    With ``sliced``, each image is read whole and run in overlapping windows instead (``loader`` is not
    used; :func:`centernet.inference.sliced_runner.run_sliced_inference`).

    Under DDP every rank runs its shard of ``loader`` (see ``ShardSampler``); the per-image results
    are gathered on every rank, put back in dataset order, scored and written by rank 0 only, and the
    metrics broadcast, so all ranks return the same dict as a single-process evaluation.
    """
    if sliced is None:
        if loader is None:
            raise ValueError("evaluate_model: a loader is needed unless the set is sliced")
        results = run_inference(model, loader, normalizer, device=device, topk=topk, flip=flip, amp=amp,
                                progress=progress)
    else:
        rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if is_distributed() else (0, 1)
        results = run_sliced_inference(
            model, dataset, normalizer, sliced.settings, input_size=sliced.input_size,
            channel_order=sliced.channel_order, device=device, amp=amp, flip=flip, topk=topk, max_dets=max_dets,
            progress=progress, rank=rank, world_size=world,
        )
    if is_distributed():
        results = [item for shard in all_gather_objects(results) for item in shard]
    results = in_dataset_order(dataset, results)
    if is_distributed() and torch.distributed.get_rank() != 0:
        return broadcast_object(None)
    records = detections_for_dataset(dataset, results)
    check_finite_records(records)
    metrics = score_detections(dataset, records, metric=metric, backend=backend, out_dir=out_dir,
                               provenance=provenance, score_threshold=score_threshold, pr_iou=pr_iou,
                               max_dets=max_dets)
    return broadcast_object(metrics)


def check_finite_records(records: list[dict[str, Any]]) -> None:
    """Raise FloatingPointError when a detection's box or score is NaN or infinite: the model's outputs are,
    i.e. training diverged (weights too large for float32 even when they are still finite themselves).

    Under DDP rank 0 raises and the other ranks wait for it until ``runtime.dist_timeout_min``.
    """
    for record in records:
        if not all(math.isfinite(float(value)) for value in (*record["bbox"], record["score"])):
            raise FloatingPointError(f"non-finite detections (image {record.get('file_name', record['image_id'])}: "
                                     f"box {record['bbox']}, score {record['score']}): the model's outputs are NaN "
                                     "or infinite, training diverged")


def in_dataset_order(
    dataset: DetectionDataset, results: list[tuple[dict[str, Any], np.ndarray]]
) -> list[tuple[dict[str, Any], np.ndarray]]:
    """One result per image id, in ``dataset.image_ids`` order (merges shards; with ``on_bad_sample: skip``
    drops the repeat of an image that stood in for an unreadable one)."""
    position = {image_id: i for i, image_id in enumerate(dataset.image_ids)}
    unique: dict[int, tuple[dict[str, Any], np.ndarray]] = {}
    for meta, dets in results:
        unique.setdefault(int(meta["image_id"]), (meta, dets))
    return sorted(unique.values(), key=lambda item: position.get(int(item[0]["image_id"]), len(position)))
