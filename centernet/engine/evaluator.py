"""Score a model (or a detections file) on a COCO-format dataset and write ``eval/`` outputs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from centernet.data.coco import CocoDetection
from centernet.engine.inference import ImageNormalizer, run_inference
from centernet.evaluation import (
    detections_to_coco_records,
    evaluate_coco,
    format_metrics_table,
    write_eval_outputs,
)

logger = logging.getLogger(__name__)


def detections_for_dataset(
    dataset: CocoDetection, results: list[tuple[dict[str, Any], np.ndarray]]
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
    dataset: CocoDetection,
    records: list[dict[str, Any]],
    *,
    backend: str,
    out_dir: Path | None,
) -> dict[str, Any]:
    """COCO metrics of ``records`` against ``dataset``; writes ``metrics.json``/``detections.json`` to ``out_dir``."""
    metrics = evaluate_coco(dataset.coco, records, backend=backend, category_ids=dataset.label_to_category_id)
    logger.info("evaluation on %d images:\n%s", len(dataset), format_metrics_table(metrics))
    if out_dir is not None:
        write_eval_outputs(out_dir, metrics, records)
    return metrics


def evaluate_model(
    model: nn.Module,
    dataset: CocoDetection,
    loader: torch.utils.data.DataLoader,
    normalizer: ImageNormalizer,
    *,
    device: torch.device,
    topk: int,
    flip: bool,
    amp: str,
    backend: str,
    out_dir: Path | None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the model over ``loader`` and score it (see :func:`score_detections`)."""
    results = run_inference(
        model, loader, normalizer, device=device, topk=topk, flip=flip, amp=amp, progress=progress
    )
    records = detections_for_dataset(dataset, results)
    return score_detections(dataset, records, backend=backend, out_dir=out_dir)
