"""Batch detection samples: stacked uint8 images and zero/-1 padded box tensors.

Only the uint8 image and a few small box tensors cross the worker/process boundary; normalisation
and target rendering happen later, batched, on the device.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch.utils.data import default_collate

from centernet.decode import BOX_COORDS

logger = logging.getLogger(__name__)

#: Label of padding slots in the collated ``labels`` tensor.
PAD_LABEL = -1
#: Keys every sample dict must carry.
SAMPLE_KEYS = ("image", "boxes", "labels", "ignore", "meta")

_NUM_CHANNELS = 3
_IMAGE_DIMS = 3  # [C, H, W]
# Set once per process when objects beyond ``max_objects`` were first dropped (warn only once).
_warned_truncation = False


def _check_sample(index: int, sample: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate sample ``index`` and return its ``boxes [N, 4]``, ``labels [N]``, ``ignore [N]``."""
    missing = [key for key in SAMPLE_KEYS if key not in sample]
    if missing:
        raise KeyError(f"collate: sample {index} lacks keys {missing} (expected {list(SAMPLE_KEYS)})")
    image = sample["image"]
    is_tensor = isinstance(image, torch.Tensor)
    expected_shape = is_tensor and image.dim() == _IMAGE_DIMS and image.shape[0] == _NUM_CHANNELS
    if not expected_shape or image.dtype != torch.uint8:
        desc = f"{image.dtype} {tuple(image.shape)}" if is_tensor else type(image).__name__
        raise ValueError(f"collate: sample {index} 'image' must be a torch.uint8 [3, H, W] tensor, got {desc}")
    boxes = torch.as_tensor(sample["boxes"], dtype=torch.float32)
    if boxes.numel() == 0:
        boxes = boxes.reshape(0, BOX_COORDS)
    if boxes.dim() != 2 or boxes.shape[1] != BOX_COORDS:
        raise ValueError(f"collate: sample {index} 'boxes' must be [N, 4] xyxy, got {tuple(boxes.shape)}")
    labels = torch.as_tensor(sample["labels"], dtype=torch.int64).reshape(-1)
    ignore = torch.as_tensor(sample["ignore"], dtype=torch.bool).reshape(-1)
    if not len(boxes) == len(labels) == len(ignore):
        raise ValueError(
            f"collate: sample {index} has {len(boxes)} boxes, {len(labels)} labels and {len(ignore)} "
            "ignore flags; expected the same count"
        )
    return boxes, labels, ignore


def _warn_truncation(index: int, count: int, max_objects: int) -> None:
    """Log one warning per process the first time objects are dropped."""
    global _warned_truncation
    if _warned_truncation:
        return
    _warned_truncation = True
    logger.warning(
        "collate: sample %d has %d objects, keeping the first %d (data.max_objects); "
        "further truncations are not reported",
        index,
        count,
        max_objects,
    )


def collate_detection_batch(samples: list[dict[str, Any]], max_objects: int | None = None) -> dict[str, Any]:
    """Stack images and pad per-image boxes to the batch maximum.

    Args:
        samples: dicts with ``"image"`` torch.uint8 ``[3, H, W]`` (same size in the batch),
            ``"boxes"`` float32 ``[N, 4]`` xyxy on the input grid, ``"labels"`` int64 ``[N]``,
            ``"ignore"`` bool ``[N]`` and ``"meta"`` dict.
        max_objects: keep at most this many objects per image (the first ones); ``None`` keeps all.

    Returns:
        dict with ``"images"`` uint8 ``[B, 3, H, W]``, ``"boxes"`` float32 ``[B, M, 4]`` (zero padded),
        ``"labels"`` int64 ``[B, M]`` (padded with ``-1``), ``"valid"`` bool ``[B, M]``,
        ``"ignore"`` bool ``[B, M]`` (False on padding) and ``"metas"`` list of the B meta dicts,
        where ``M`` is the largest kept ``N`` in the batch (may be 0).
    """
    if not samples:
        raise ValueError("collate: got an empty list of samples")
    if max_objects is not None and max_objects < 1:
        raise ValueError(f"collate: max_objects must be a positive int or None, got {max_objects}")
    checked = [_check_sample(i, sample) for i, sample in enumerate(samples)]
    image_shape = samples[0]["image"].shape
    for i, sample in enumerate(samples):
        if sample["image"].shape != image_shape:
            raise ValueError(
                f"collate: sample {i} image has shape {tuple(sample['image'].shape)}, "
                f"expected {tuple(image_shape)} like sample 0"
            )
    if max_objects is not None:
        for i, (boxes, _, _) in enumerate(checked):
            if len(boxes) > max_objects:
                _warn_truncation(i, len(boxes), max_objects)
        checked = [(b[:max_objects], lab[:max_objects], ign[:max_objects]) for b, lab, ign in checked]

    batch_size = len(samples)
    num_slots = max(len(boxes) for boxes, _, _ in checked)
    boxes_out = torch.zeros((batch_size, num_slots, BOX_COORDS), dtype=torch.float32)
    labels_out = torch.full((batch_size, num_slots), PAD_LABEL, dtype=torch.int64)
    valid_out = torch.zeros((batch_size, num_slots), dtype=torch.bool)
    ignore_out = torch.zeros((batch_size, num_slots), dtype=torch.bool)
    for i, (boxes, labels, ignore) in enumerate(checked):
        count = len(boxes)
        boxes_out[i, :count] = boxes
        labels_out[i, :count] = labels
        valid_out[i, :count] = True
        ignore_out[i, :count] = ignore
    # default_collate stacks into shared memory inside loader workers (saves one copy of the batch).
    images = default_collate([sample["image"] for sample in samples])  # [B, 3, H, W] uint8
    return {
        "images": images,
        "boxes": boxes_out,
        "labels": labels_out,
        "valid": valid_out,
        "ignore": ignore_out,
        "metas": [sample["meta"] for sample in samples],
    }


class DetectionCollate:
    """Picklable ``collate_fn`` for ``DataLoader`` with an optional per-image object cap."""

    def __init__(self, max_objects: int | None = None) -> None:
        """Store the cap.

        Args:
            max_objects: keep at most this many objects per image; ``None`` keeps all.
        """
        if max_objects is not None and max_objects < 1:
            raise ValueError(f"max_objects must be a positive int or None, got {max_objects}")
        self.max_objects = max_objects

    def __repr__(self) -> str:
        """Readable summary."""
        return f"{type(self).__name__}(max_objects={self.max_objects})"

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """Collate ``samples``; see :func:`collate_detection_batch`."""
        return collate_detection_batch(samples, self.max_objects)


def make_collate(max_objects: int | None = None) -> DetectionCollate:
    """Return a picklable collate callable keeping at most ``max_objects`` objects per image."""
    return DetectionCollate(max_objects)
