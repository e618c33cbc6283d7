"""COCO-format detection dataset.

Reads a COCO ``instances_*.json`` file with pycocotools, maps category ids to contiguous labels
``0..C-1`` and back, turns ``iscrowd`` objects into ignore regions, and yields uint8 images with
``[x1, y1, x2, y2]`` float32 boxes. Random transforms draw from a generator seeded by
``(seed, epoch, index)``, so every sample is reproducible whatever worker loads it.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO

from centernet.data.base import BOX_LEN, BadSampleError, BadSamplePolicy, DetectionDataset, check_unique_classes
from centernet.data.sample import RawSample, SampleTransform

logger = logging.getLogger(__name__)

_REQUIRED_KEYS = ("images", "categories")


def _read_annotation_json(ann_file: Path) -> dict[str, Any]:
    """Parse a COCO annotation file with one-line errors naming the file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not valid JSON or lacks the ``images`` / ``categories`` keys.
    """
    if not ann_file.is_file():
        raise FileNotFoundError(f"COCO annotation file not found: {ann_file}")
    try:
        with ann_file.open("r", encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"COCO annotation file {ann_file} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}"
        ) from e
    if not isinstance(data, dict):
        raise ValueError(f"COCO annotation file {ann_file}: expected a JSON object, got {type(data).__name__}")
    missing = [key for key in _REQUIRED_KEYS if key not in data]
    if missing:
        raise ValueError(f"COCO annotation file {ann_file}: missing key(s) {missing}")
    data.setdefault("annotations", [])
    return data


def _renumber_annotation_ids(data: dict[str, Any], ann_file: Path) -> None:
    """Give annotations ids ``1..N`` when any id is missing or < 1 (pycocotools treats id 0 as unmatched)."""
    anns = data["annotations"]
    if all(isinstance(a.get("id"), int) and a["id"] >= 1 for a in anns):
        return
    logger.warning("%s: annotation ids missing or < 1; renumbering them 1..%d", ann_file, len(anns))
    for new_id, ann in enumerate(anns, start=1):
        ann["id"] = new_id


def _checked_bbox(bbox: Any, size: tuple[Any, Any], where: str) -> tuple[float, float, float, float]:
    """``(x, y, w, h)`` of a COCO bbox after checking it.

    Args:
        bbox: the annotation's ``bbox`` value.
        size: ``(height, width)`` of the image from the annotation file (None entries skip the check).
        where: the record, for the messages.

    Raises:
        BadSampleError: not 4 finite numbers, negative width or height, or entirely outside the image.
    """
    if not isinstance(bbox, list | tuple) or len(bbox) != BOX_LEN or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in bbox
    ):
        raise BadSampleError(f"{where} has bbox {bbox!r}, expected [x, y, w, h] numbers")
    x, y, w, h = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise BadSampleError(f"{where} has a non-finite bbox {bbox!r}")
    if w < 0 or h < 0:
        raise BadSampleError(f"{where} has a negative width or height: bbox {bbox!r}")
    height, width = size
    if w > 0 and h > 0 and isinstance(height, int | float) and isinstance(width, int | float):
        if x >= width or y >= height or x + w <= 0 or y + h <= 0:
            raise BadSampleError(f"{where} has bbox {bbox!r} entirely outside the {width}x{height} image")
    return x, y, w, h


class CocoDetection(DetectionDataset):
    """A COCO-format detection dataset.

    Attributes:
        coco: the pycocotools ``COCO`` object (ground truth for evaluation).
        image_ids: image ids in dataset order (sorted ascending; images without annotations included).
        class_names: ``[C]`` class names, index = contiguous label.
        label_to_category_id: ``[C]`` COCO category id of each contiguous label.
        category_id_to_label: inverse of ``label_to_category_id``.
        transform: the joint image/box transform, or None.
        seed: base seed of the per-sample generators.
        epoch: current epoch (see :meth:`set_epoch`).
    """

    def __init__(
        self,
        ann_file: str | os.PathLike[str],
        img_dir: str | os.PathLike[str],
        *,
        transform: SampleTransform | None = None,
        classes: Sequence[str] | None = None,
        seed: int = 0,
        on_bad_sample: BadSamplePolicy = "error",
    ) -> None:
        """Load the annotation file and index the annotations per image.

        Args:
            ann_file: path to the COCO ``instances_*.json`` file.
            img_dir: folder the images' ``file_name`` entries are relative to.
            transform: called as ``transform(image, boxes, rng)`` in ``__getitem__``; None keeps the
                raw image.
            classes: class names to keep, in label order; None keeps every category sorted by id.
                Annotations of other categories are dropped.
            seed: base seed of the per-sample generators.
            on_bad_sample: ``error`` raises on a bad annotation or image; ``skip`` drops the image
                (annotation problems, here) or loads the next image instead (unreadable image files,
                in ``__getitem__``), with a warning each.

        Raises:
            FileNotFoundError: ``ann_file`` does not exist.
            ValueError: ``ann_file`` is not valid COCO JSON, ``classes`` names an unknown or
                duplicated class, or (``on_bad_sample="error"``) an annotation is bad: a bbox that is
                not 4 finite numbers, a negative width/height, a box entirely outside its image or an
                unknown category id (the message names the file, annotation id and image).
        """
        self.ann_file = Path(ann_file)
        self.img_dir = Path(img_dir)
        super().__init__(transform=transform, seed=seed, source=str(self.ann_file), on_bad_sample=on_bad_sample)

        data = _read_annotation_json(self.ann_file)
        _renumber_annotation_ids(data, self.ann_file)
        self.coco = COCO()
        self.coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco.createIndex()

        self.label_to_category_id, self.class_names = self._select_categories(classes)
        self.category_id_to_label = {cat: label for label, cat in enumerate(self.label_to_category_id)}
        self.image_ids = []
        self._targets = []
        for image_id in sorted(self.coco.getImgIds()):
            try:
                targets = self._index_annotations(image_id)
            except BadSampleError as error:
                self.report_bad_sample(error)
                continue
            self.image_ids.append(image_id)
            self._targets.append(targets)
        if self.bad_samples:
            logger.warning("%s: skipped %d image(s) with bad annotations", self.ann_file, len(self.bad_samples))

    def _select_categories(self, classes: Sequence[str] | None) -> tuple[list[int], list[str]]:
        """Return ``(label_to_category_id, class_names)`` for all categories or the named ones."""
        cats = sorted(self.coco.loadCats(self.coco.getCatIds()), key=lambda c: c["id"])
        if classes is None:
            return [int(c["id"]) for c in cats], [str(c["name"]) for c in cats]
        names = [str(c["name"]) for c in cats]
        check_unique_classes(classes)
        unknown = [n for n in classes if n not in names]
        if unknown:
            raise ValueError(f"unknown class name(s) {unknown} for {self.ann_file}; the dataset has {names}")
        ambiguous = sorted({n for n in classes if names.count(n) > 1})
        if ambiguous:
            raise ValueError(f"{self.ann_file}: category name(s) {ambiguous} belong to several category ids")
        by_name = {str(c["name"]): int(c["id"]) for c in cats}
        return [by_name[n] for n in classes], list(classes)

    def _index_annotations(self, image_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return ``(boxes [N, 4] float32 xyxy, labels [N] int64, ignore [N] bool)`` of one image.

        Annotations of unselected categories and boxes of zero width or height are dropped (as the
        original does); boxes partly outside the image are kept (the transform clips them).

        Raises:
            BadSampleError: a bad annotation (see ``__init__``), naming the file, annotation and image.
        """
        boxes, labels, ignore = [], [], []
        info = self.coco.imgs[image_id]
        for ann in self.coco.imgToAnns.get(image_id, []):
            where = f"{self.ann_file}: annotation id {ann.get('id')} (image id {image_id}, {info.get('file_name')})"
            category_id = ann.get("category_id")
            if category_id not in self.coco.cats:
                known = sorted(self.coco.cats)
                raise BadSampleError(f"{where} has unknown category id {category_id!r}; known: {known}")
            label = self.category_id_to_label.get(category_id)
            if label is None:
                continue
            x, y, w, h = _checked_bbox(ann.get("bbox"), (info.get("height"), info.get("width")), where)
            if w == 0 or h == 0:
                logger.debug("%s: dropping empty box %s", where, ann.get("bbox"))
                continue
            boxes.append((x, y, x + w, y + h))
            labels.append(label)
            ignore.append(bool(ann.get("iscrowd", 0)))
        return (
            np.asarray(boxes, dtype=np.float32).reshape(-1, BOX_LEN),
            np.asarray(labels, dtype=np.int64),
            np.asarray(ignore, dtype=bool),
        )

    def image_names(self, index: int) -> tuple[str, ...]:
        """The annotated ``file_name`` of image ``index`` and its last part (``a/b.jpg`` and ``b.jpg``)."""
        file_name = str(self.coco.imgs[self.image_ids[self._check_index(index)]]["file_name"])
        return tuple(dict.fromkeys((file_name, Path(file_name).name)))

    def image_targets(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(boxes float32 [N, 4] xyxy, labels int64 [N], ignore bool [N])`` of one image (copies)."""
        boxes, labels, ignore = self._targets[self._check_index(index)]
        return boxes.copy(), labels.copy(), ignore.copy()

    def load_raw(self, index: int) -> RawSample:
        """Load one image and its annotations without any transform.

        Args:
            index: position in ``image_ids`` (negative indices count from the end).

        Returns:
            ``RawSample``: image ``uint8 [H, W, 3]`` BGR, boxes ``float32 [N, 4]`` xyxy in image pixels,
            labels ``int64 [N]``, ignore ``bool [N]``, image_id, file_name.

        Raises:
            IndexError: ``index`` is out of range.
            FileNotFoundError: the image file does not exist.
            ValueError: the image file cannot be decoded.
        """
        index = self._check_index(index)
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        file_name = str(info["file_name"])
        expected_size = (info.get("height"), info.get("width"))
        image = self._load_image(self.img_dir / file_name, image_id, expected_size, str(self.ann_file))
        boxes, labels, ignore = self._targets[index]
        return RawSample(
            image=image,
            boxes=boxes.copy(),
            labels=labels.copy(),
            ignore=ignore.copy(),
            image_id=int(image_id),
            file_name=file_name,
        )
