"""Precision/recall in every COCO evaluation: metrics keys, hand-computed values, f1_curve.png, the log line."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import pytest

from centernet.config import load_config
from centernet.data.build import build_val_datasets
from centernet.evaluation import F1_CURVE_FILENAME
from centernet.inference.evaluator import score_detections


def records_for(dataset: Any) -> tuple[list[dict[str, Any]], int, int]:
    """Image 0's ground-truth boxes as detections scoring 0.9 plus one box far away scoring 0.5.

    Returns the records, the objects of image 0 and the objects of the whole set.
    """
    boxes, labels, ignore = dataset.image_targets(0)
    image_id = int(dataset.image_ids[0])
    records = [
        {"image_id": image_id, "category_id": int(dataset.label_to_category_id[int(label)]),
         "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], "score": 0.9}
        for (x1, y1, x2, y2), label in zip(boxes.tolist(), labels.tolist(), strict=True)
    ]
    records.append({"image_id": image_id, "category_id": int(dataset.label_to_category_id[0]),
                    "bbox": [1000.0, 1000.0, 10.0, 10.0], "score": 0.5})
    total = sum(int((~dataset.image_targets(i)[2]).sum()) for i in range(len(dataset.image_ids)))
    return records, int((~ignore).sum()), total


def test_coco_evaluation_adds_precision_recall_and_writes_the_f1_curve(
    tiny_config: Callable[..., Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    [(name, dataset)] = build_val_datasets(load_config(tiny_config()))
    assert name is None
    records, n0, total = records_for(dataset)
    assert 0 < n0 < total  # the other images' objects are missed
    with caplog.at_level(logging.INFO, logger="centernet"):
        metrics = score_detections(dataset, records, metric="coco", backend="pycocotools", out_dir=tmp_path,
                                   score_threshold=0.3, pr_iou=0.4)
    precision, recall = n0 / (n0 + 1), n0 / total  # the far box is the one false positive
    assert metrics["precision@0.4"] == pytest.approx(precision)
    assert metrics["recall@0.4"] == pytest.approx(recall)
    assert metrics["f1@0.4"] == pytest.approx(2 * precision * recall / (precision + recall))
    # Above 0.5 the false positive is gone (precision 1): 0.51 is the lowest threshold of the best F1.
    assert metrics["best_f1_threshold"] == pytest.approx(0.51)
    assert metrics["best_f1"] == pytest.approx(2 * recall / (1 + recall))
    per_image = metrics["precision_recall"].pop("per_image")
    assert metrics["precision_recall"] == {"score_threshold": 0.3, "iou_threshold": 0.4, "tp": n0, "fp": 1,
                                           "fn": total - n0, "ignored": 0, "objects": total, "detections": n0 + 1}
    first = dataset.coco.imgs[int(dataset.image_ids[0])]
    assert per_image[0] == {"tp": n0, "fp": 1, "fn": 0, "ignored": 0, "objects": n0, "precision": n0 / (n0 + 1),
                            "recall": 1.0, "image_id": first["id"], "file_name": first["file_name"]}
    assert len(per_image) == len(dataset.image_ids) and all(row["recall"] == 0.0 for row in per_image[1:])
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["recall@0.4"] == pytest.approx(recall, abs=1e-6) and saved["precision_recall"]["tp"] == n0
    curve = cv2.imread(str(tmp_path / F1_CURVE_FILENAME))
    assert curve is not None and curve.shape[0] > 100 and curve.shape[1] > 100
    text = caplog.text
    assert "AP50" in text and f"box precision {precision:.3f}, recall {recall:.3f}" in text
    assert "best F1" in text and "at score >= 0.51" in text


def test_thresholds_come_from_the_arguments(tiny_config: Callable[..., Path]) -> None:
    [(_, dataset)] = build_val_datasets(load_config(tiny_config()))
    records, n0, total = records_for(dataset)
    metrics = score_detections(dataset, records, metric="coco", backend="pycocotools", out_dir=None,
                               score_threshold=0.6, pr_iou=0.5)
    assert metrics["precision@0.5"] == 1.0 and metrics["recall@0.5"] == pytest.approx(n0 / total)
    assert "precision@0.4" not in metrics
    assert metrics["precision_recall"]["score_threshold"] == 0.6 and metrics["precision_recall"]["fp"] == 0
