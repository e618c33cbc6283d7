"""Evaluation row: COCO mAP with faster-coco-eval against pycocotools on a large synthetic results file."""

from __future__ import annotations

import contextlib
import io
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import Row, interleaved_times, make_row
from benchmarks.context import Context
from benchmarks.synthetic import BOXES_PER_IMAGE, IMAGE_SIZE, NUM_CLASSES, random_boxes
from centernet.evaluation.coco import BACKENDS

COCO_MAX_DETS = 100  # the standard maxDets of COCO AP

FULL: dict[str, Any] = {"images": 5000, "repeats": 2}
QUICK: dict[str, Any] = {"images": 20, "repeats": 1}
FALSE_POSITIVES = 8  # extra random detections per image
MISS_RATE = 0.1  # ground-truth objects without a detection
JITTER = 0.1  # detection corners move by up to this fraction of the box side
NUM_STATS = 12
STATS_TOLERANCE = 1e-12  # the two evaluators sum in different orders: equal up to float64 rounding


def write_results(folder: Path, num_images: int, seed: int = 0) -> tuple[Path, Path]:
    """Write a synthetic COCO ground truth and a matching results file (jittered hits + false positives)."""
    rng = np.random.default_rng(seed)
    width, height = IMAGE_SIZE
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    detections: list[dict[str, Any]] = []
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "file_name": f"{image_id:06d}.jpg", "width": width, "height": height})
        gt_boxes = random_boxes(rng, BOXES_PER_IMAGE, width, height)
        gt_labels = rng.integers(1, NUM_CLASSES + 1, size=len(gt_boxes))
        for box, label in zip(gt_boxes, gt_labels):
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": int(label),
                "bbox": [float(v) for v in box], "area": float(box[2] * box[3]), "iscrowd": 0,
            })
        hits = gt_boxes[rng.random(len(gt_boxes)) > MISS_RATE]
        hit_labels = gt_labels[: len(hits)]
        moved = hits + rng.uniform(-JITTER, JITTER, size=hits.shape) * np.repeat(hits[:, 2:], 2, axis=1)
        noise = random_boxes(rng, FALSE_POSITIVES, width, height)
        noise_labels = rng.integers(1, NUM_CLASSES + 1, size=FALSE_POSITIVES)
        for box, label in zip(np.concatenate([moved, noise]), np.concatenate([hit_labels, noise_labels])):
            detections.append({
                "image_id": image_id, "category_id": int(label), "bbox": [round(float(v), 2) for v in box],
                "score": round(float(rng.uniform(0.05, 1.0)), 5),
            })
    categories = [{"id": i, "name": f"class{i}"} for i in range(1, NUM_CLASSES + 1)]
    gt_file, dt_file = folder / "gt.json", folder / "detections.json"
    folder.mkdir(parents=True, exist_ok=True)
    gt_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    dt_file.write_text(json.dumps(detections))
    return gt_file, dt_file


def _evaluate(backend: str, gt_file: Path, dt_file: Path) -> np.ndarray:
    """Read both JSON files and return COCOeval's 12 summary stats from ``backend``."""
    dataset: dict[str, Any] = json.loads(gt_file.read_text())
    records = json.loads(dt_file.read_text())
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and summary
        evaluator = BACKENDS[backend](dataset, records, False, COCO_MAX_DETS)
    return np.asarray(evaluator.stats[:NUM_STATS], dtype=np.float64)


def run(ctx: Context) -> list[Row]:
    """Time both evaluators end to end (JSON in, 12 stats out) and check that the stats agree."""
    p = QUICK if ctx.quick else FULL
    gt_file, dt_file = write_results(ctx.scratch / "evaluation", p["images"])
    stats: dict[str, np.ndarray] = {}

    def timed(backend: str) -> Callable[[], object]:
        def call() -> None:
            stats[backend] = _evaluate(backend, gt_file, dt_file)

        return call

    # No warm-up run: each call is seconds long and starts from the JSON files.
    callables = {"ours": timed("faster_coco_eval"), "reference": timed("pycocotools")}
    times = interleaved_times(callables, p["repeats"], warmup=False)
    ours_ms, reference_ms = statistics.median(times["ours"]), statistics.median(times["reference"])
    ours_stats, reference_stats = stats["faster_coco_eval"], stats["pycocotools"]
    num_dets = len(json.loads(dt_file.read_text()))
    return [
        make_row(
            f"COCO eval, {p['images']} images, {num_dets} detections, 80 classes",
            "faster_coco_eval",
            "pycocotools",
            "ms",
            ours_ms,
            reference_ms,
            "<= 0.33",
            max_abs_stat_difference=float(np.abs(ours_stats - reference_stats).max()),
            same_12_stats=bool(np.allclose(ours_stats, reference_stats, rtol=0, atol=STATS_TOLERANCE)),
            AP=float(ours_stats[0]),
        )
    ]
