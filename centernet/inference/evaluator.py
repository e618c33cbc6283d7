"""Score a model (or a detections file) on a COCO-format dataset and write ``eval/`` outputs."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from centernet.data.base import DetectionDataset
from centernet.data.normalize import ImageNormalizer
from centernet.engine.distributed import all_gather_objects, broadcast_object, is_distributed
from centernet.evaluation import (
    PR_CURVES_FILENAME,
    coco_records_to_voc_detections,
    detections_to_coco_records,
    evaluate_coco_with_curves,
    evaluate_voc,
    format_metrics_table,
    plot_pr_curves,
    write_eval_outputs,
)
from centernet.inference.preview import PREDICTIONS_FILENAME, write_predictions_preview
from centernet.inference.runner import run_inference

logger = logging.getLogger(__name__)


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
) -> dict[str, Any]:
    """Metrics of ``records`` against ``dataset``; writes ``metrics.json``/``detections.json`` to ``out_dir``
    (and ``predictions.png``, the first val images with ground truth and predictions; for the COCO metric
    also ``pr_curves.png``, per-class precision/recall at IoU 0.5 and 0.75).

    Args:
        dataset: the evaluated dataset (its ground truth and class mapping).
        records: COCO-results records in original-image pixels.
        metric: ``coco`` (COCO mAP over the trained categories) | ``voc07`` (11-point AP) | ``voc`` (area AP).
        backend: COCO evaluation backend (``pycocotools`` | ``faster_coco_eval``).
        out_dir: where to write the two JSON files (None: do not write).
        provenance: what produced the detections (checkpoint, epoch, test-time options), written into
            ``metrics.json`` next to the metrics (not returned).
    """
    if metric == "coco":
        ground_truth = getattr(dataset, "coco", None)
        if ground_truth is None:
            raise ValueError(
                "eval.metric=coco needs COCO ground truth; for a VOC-format set use eval.metric=voc07|voc "
                "or convert it with datasets/voc2coco.py"
            )
        metrics, curves = evaluate_coco_with_curves(
            ground_truth, records, backend=backend, category_ids=dataset.label_to_category_id
        )
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            plot_pr_curves(curves, out_dir / PR_CURVES_FILENAME)
    else:
        metrics = _score_voc(dataset, records, use_07_metric=metric == "voc07")
    logger.info("evaluation on %d images:\n%s", len(dataset), format_metrics_table(metrics))
    if out_dir is not None:
        write_eval_outputs(out_dir, {**metrics, **(provenance or {})}, records)
        write_predictions_preview(dataset, records, out_dir / PREDICTIONS_FILENAME)
    return metrics


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
    loader: torch.utils.data.DataLoader,
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
) -> dict[str, Any]:
    """Run the model over ``loader`` and score it (see :func:`score_detections`).

    Under DDP every rank runs its shard of ``loader`` (see ``ShardSampler``); the per-image results
    are gathered on every rank, put back in dataset order, scored and written by rank 0 only, and the
    metrics broadcast, so all ranks return the same dict as a single-process evaluation.
    """
    results = run_inference(model, loader, normalizer, device=device, topk=topk, flip=flip, amp=amp, progress=progress)
    if is_distributed():
        results = [item for shard in all_gather_objects(results) for item in shard]
    results = in_dataset_order(dataset, results)
    if is_distributed() and torch.distributed.get_rank() != 0:
        return broadcast_object(None)
    records = detections_for_dataset(dataset, results)
    metrics = score_detections(dataset, records, metric=metric, backend=backend, out_dir=out_dir,
                               provenance=provenance)
    return broadcast_object(metrics)


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
