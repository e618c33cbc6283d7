"""Loader rows: training samples/s on one core, our uint8 pipeline against the original float32 one.

The first row is the plain CenterNet augmentation; the second puts a typical aerial albumentations chain
(``AERIAL_CHAIN``) in front of it, to show what such a chain costs against the same reference.
"""

from __future__ import annotations

from pathlib import Path
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
#: augment.albumentations of a typical aerial-imagery config (top-down views: any rotation/flip is valid).
AERIAL_CHAIN: list[dict[str, Any]] = [
    {"type": "RandomRotate90", "p": 0.5},
    {"type": "VerticalFlip", "p": 0.5},
    {"type": "HueSaturationValue", "p": 0.5},
    {"type": "RandomBrightnessContrast", "p": 0.5},
]


def _samples_per_second(
    p: dict[str, Any], ann_file: Path, img_dir: Path, transform: TrainTransform
) -> tuple[float, float]:
    """``(ours, reference)`` samples/s over one pass (``__getitem__`` + collate per batch) of the images."""
    ours_set = CocoDetection(ann_file, img_dir, transform=transform, seed=0)
    reference_set = ReferenceCtdetDataset(ann_file, img_dir, input_size=p["input"], seed=0)
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
    return per_second / ours_ms, per_second / reference_ms


def run(ctx: Context) -> list[Row]:
    """The plain row (target >= 3x the reference) and the row with the aerial albumentations chain."""
    from centernet.data.transforms.albumentations_chain import AlbumentationsChain  # slow import, this row only

    p = QUICK if ctx.quick else FULL
    ann_file, img_dir = write_coco_set(ctx.scratch / "loader", p["images"], image_size=p["image_size"])
    size = p["input"]
    width, height = p["image_size"]
    name = f"{width}x{height} JPEG -> {size}, ~7 boxes, 80 classes, batch {p['batch']}, 1 core"
    plain = _samples_per_second(p, ann_file, img_dir, TrainTransform(input_size=(size, size)))
    chain = TrainTransform(input_size=(size, size), albumentations=AlbumentationsChain(AERIAL_CHAIN))
    with_chain = _samples_per_second(p, ann_file, img_dir, chain)
    chain_names = " + ".join(spec["type"] for spec in AERIAL_CHAIN)
    return [
        make_row(
            f"loader, train aug, {name}",
            "uint8 pipeline + box collate",
            "float32 numpy + per-sample heatmap",
            "samples/s",
            *plain,
            ">= 3",
            ours_ms_per_sample=MS_PER_S / plain[0],
            reference_ms_per_sample=MS_PER_S / plain[1],
        ),
        make_row(
            f"loader, albumentations {chain_names} (p 0.5 each) + train aug, {name}",
            "albumentations chain + uint8 pipeline + box collate",
            "float32 numpy + per-sample heatmap",
            "samples/s",
            *with_chain,
            "report",
            ours_ms_per_sample=MS_PER_S / with_chain[0],
            reference_ms_per_sample=MS_PER_S / with_chain[1],
            chain_ms_per_sample=MS_PER_S / with_chain[0] - MS_PER_S / plain[0],
        ),
    ]
