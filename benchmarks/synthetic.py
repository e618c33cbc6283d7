"""Synthetic COCO-like data written to disk for the benchmarks: textured JPEGs and box annotations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

IMAGE_SIZE = (640, 480)  # (width, height), the typical COCO image
NUM_CLASSES = 80
BOXES_PER_IMAGE = 7  # COCO averages about 7.3 objects per image
MIN_BOX, MAX_BOX_FRACTION = 8.0, 0.6  # box sides in pixels: log-uniform from MIN_BOX to this share of the image
JPEG_QUALITY = 90
_NOISE_STD = 12.0
_BLOBS = 12


def random_boxes(
    rng: np.random.Generator, count: int, width: int, height: int
) -> np.ndarray:
    """``[count, 4]`` float32 COCO ``[x, y, w, h]`` boxes inside a ``width x height`` image, log-uniform sides."""
    top = MAX_BOX_FRACTION * min(width, height)
    sides = np.exp(rng.uniform(np.log(MIN_BOX), np.log(top), size=(count, 2)))  # (w, h)
    x = rng.uniform(0, width - sides[:, 0])
    y = rng.uniform(0, height - sides[:, 1])
    return np.stack([x, y, sides[:, 0], sides[:, 1]], axis=1).astype(np.float32)


def textured_image(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A ``[height, width, 3]`` uint8 BGR image with gradients, blobs and noise (JPEG-sized like a photo)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.empty((height, width, 3), dtype=np.float32)
    for channel in range(3):
        fx, fy, phase = rng.uniform(0.005, 0.03), rng.uniform(0.005, 0.03), rng.uniform(0, 2 * np.pi)
        image[..., channel] = 128 + 80 * np.sin(fx * xs + fy * ys + phase)
    for _ in range(_BLOBS):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(10, width // 4)), int(rng.integers(10, height // 4)))
        colour = tuple(float(v) for v in rng.uniform(0, 255, size=3))
        cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
    image += rng.normal(0, _NOISE_STD, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_coco_set(
    out_dir: Path,
    num_images: int,
    *,
    image_size: tuple[int, int] = IMAGE_SIZE,
    boxes_per_image: int = BOXES_PER_IMAGE,
    num_classes: int = NUM_CLASSES,
    seed: int = 0,
) -> tuple[Path, Path]:
    """Write ``num_images`` JPEGs and a COCO ``instances`` file under ``out_dir``.

    Args:
        out_dir: destination folder (created).
        num_images: images to write.
        image_size: ``(width, height)`` of every image.
        boxes_per_image: objects per image.
        num_classes: categories ``1..num_classes``.
        seed: seed of every random draw.

    Returns:
        ``(annotation file, image folder)``.
    """
    rng = np.random.default_rng(seed)
    width, height = image_size
    img_dir = out_dir / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id in range(1, num_images + 1):
        file_name = f"{image_id:06d}.jpg"
        image = textured_image(rng, width, height)
        cv2.imwrite(str(img_dir / file_name), image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for box in random_boxes(rng, boxes_per_image, width, height):
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": int(rng.integers(1, num_classes + 1)),
                "bbox": [round(float(v), 2) for v in box], "area": float(box[2] * box[3]), "iscrowd": 0,
            })
    categories = [{"id": i, "name": f"class{i}"} for i in range(1, num_classes + 1)]
    ann_file = out_dir / "instances.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return ann_file, img_dir
