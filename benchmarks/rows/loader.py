"""Loader row: training samples/s on one core, our uint8 pipeline against the original float32 one."""

from __future__ import annotations

from typing import Any

from benchmarks.common import MS_PER_S, Row, interleaved_medians, make_row, threads
from benchmarks.context import Context
from benchmarks.reference.loader import ReferenceCtdetDataset, reference_collate
from benchmarks.synthetic import IMAGE_SIZE, write_coco_set
from centernet.data.coco import CocoDetection
from centernet.data.collate import collate_detection_batch
from centernet.data.transforms import TrainTransform

FULL: dict[str, Any] = {"images": 32, "batch": 8, "input": 512, "image_size": IMAGE_SIZE, "repeats": 5}
QUICK: dict[str, Any] = {"images": 4, "batch": 2, "input": 64, "image_size": (80, 60), "repeats": 1}
MAX_OBJECTS = 128


def run(ctx: Context) -> list[Row]:
    """Time one pass over the images (``__getitem__`` + collate per batch) with each pipeline."""
    p = QUICK if ctx.quick else FULL
    ann_file, img_dir = write_coco_set(ctx.scratch / "loader", p["images"], image_size=p["image_size"])
    size = p["input"]
    ours_set = CocoDetection(ann_file, img_dir, transform=TrainTransform(input_size=(size, size)), seed=0)
    reference_set = ReferenceCtdetDataset(ann_file, img_dir, input_size=size, seed=0)
    batches = [range(i, min(i + p["batch"], p["images"])) for i in range(0, p["images"], p["batch"])]

    def ours() -> None:
        for batch in batches:
            collate_detection_batch([dict(ours_set[i]) for i in batch], MAX_OBJECTS)

    def reference() -> None:
        for batch in batches:
            reference_collate([reference_set[i] for i in batch])

    with threads(1):
        ours_ms, reference_ms = interleaved_medians(ours, reference, p["repeats"])
    per_second = MS_PER_S * p["images"]
    width, height = p["image_size"]
    return [
        make_row(
            f"loader, train aug, {width}x{height} JPEG -> {size}, ~7 boxes, 80 classes, batch {p['batch']}, 1 core",
            "uint8 pipeline + box collate",
            "float32 numpy + per-sample heatmap",
            "samples/s",
            per_second / ours_ms,
            per_second / reference_ms,
            ">= 3",
            ours_ms_per_sample=ours_ms / p["images"],
            reference_ms_per_sample=reference_ms / p["images"],
        )
    ]
