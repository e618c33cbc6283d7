"""Convert a Pascal VOC split (one or several years) to a COCO "instances" JSON file.

The VOC files are read with ``centernet.data.voc.VOCDetection``, so the conversion follows exactly the
dataset's rules: boxes become 0-based (``x = xmin - 1``, ``y = ymin - 1``, ``w = xmax - x``,
``h = ymax - y``), ``difficult`` objects become ``iscrowd: 1`` (ignored by COCO evaluation, and ignore
regions for ``CocoDetection``), image ids are ``1..N`` in split order (the same ids ``VOCDetection``
gives), annotation ids ``1..M``, category ids ``1..C`` in class order. Image ``width`` / ``height``
come from the XML ``<size>``, or from the decoded image when the XML has none (with a warning).

Usage::

    python datasets/voc2coco.py --root VOCdevkit --split trainval --years 2007 2012 --out trainval.json
    python datasets/voc2coco.py --root VOCdevkit/VOC2007 --split test --out voc07_test.json
        [--image-root DIR] [--classes cat dog]

``file_name`` entries are relative to ``--image-root`` (default: ``--root``), the ``img_dir`` to give
``CocoDetection`` together with the written file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from centernet.data.base import read_image
from centernet.data.voc import VOCDetection, VOCImageRecord

logger = logging.getLogger("voc2coco")

SUPERCATEGORY = "none"


def _image_size(record: VOCImageRecord, image_id: int) -> tuple[int, int]:
    """``(height, width)`` of one image: the XML ``<size>``, else the decoded image."""
    if record.annotation.size is not None:
        return record.annotation.size
    logger.warning("%s has no <size>; reading %s for its size", record.xml_path, record.image_path)
    height, width = read_image(record.image_path, image_id).shape[:2]
    return int(height), int(width)


def _relative_file_name(record: VOCImageRecord, image_root: Path) -> str:
    """The image path relative to ``image_root`` (``/``-separated); error when it lies outside."""
    try:
        return record.image_path.resolve().relative_to(image_root.resolve()).as_posix()
    except ValueError as e:
        raise ValueError(f"image {record.image_path} is not under the image root {image_root}") from e


def convert(
    root: str | os.PathLike[str],
    split: str,
    *,
    years: Sequence[str] | None = None,
    image_root: str | os.PathLike[str] | None = None,
    classes: Sequence[str] | None = None,
    out: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Build (and optionally write) the COCO instances dict of a VOC split.

    Args:
        root: a ``VOC20xx`` folder (``years=None``) or the ``VOCdevkit`` folder holding them.
        split: the ``ImageSets/Main`` list (``train``, ``val``, ``trainval``, ``test``).
        years: e.g. ``["2007", "2012"]``; None: ``root`` is one year.
        image_root: the folder ``file_name`` entries are relative to (default: ``root``).
        classes: class names in category-id order; None: the 20 VOC classes (see ``VOCDetection``).
        out: when given, the JSON file to write (parent folders created, written atomically).

    Returns:
        ``{"images", "annotations", "categories"}``: images ``{id, file_name, width, height}``,
        annotations ``{id, image_id, category_id, bbox [x, y, w, h], area, iscrowd}``, categories
        ``{id, name, supercategory}``.

    Raises:
        FileNotFoundError / ValueError: as ``VOCDetection`` for the VOC files; an image outside
            ``image_root``; an unreadable image whose XML has no ``<size>``.
    """
    dataset = VOCDetection(root, split, years=years, classes=classes)
    image_root = Path(root if image_root is None else image_root)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for image_id, record in zip(dataset.image_ids, dataset.records, strict=True):
        height, width = _image_size(record, image_id)
        images.append(
            {"id": image_id, "file_name": _relative_file_name(record, image_root), "width": width, "height": height}
        )
        ann = record.annotation
        for box, label, difficult in zip(ann.boxes.tolist(), ann.labels.tolist(), ann.difficult.tolist(), strict=True):
            x1, y1, x2, y2 = box
            w, h = x2 - x1, y2 - y1
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": dataset.label_to_category_id[label],
                    "bbox": [x1, y1, w, h],
                    "area": w * h,
                    "iscrowd": int(difficult),
                }
            )
    categories = [
        {"id": cat, "name": name, "supercategory": SUPERCATEGORY}
        for cat, name in zip(dataset.label_to_category_id, dataset.class_names, strict=True)
    ]
    data = {"images": images, "annotations": annotations, "categories": categories}
    if out is not None:
        out_path = Path(out)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = out_path.with_name(out_path.name + ".tmp")
        tmp_path.write_text(json.dumps(data), encoding="utf-8")
        tmp_path.replace(out_path)
        logger.info("wrote %s: %d images, %d annotations", out_path, len(images), len(annotations))
    return data


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="voc2coco.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="VOC20xx folder, or VOCdevkit folder with --years")
    parser.add_argument("--split", required=True, help="ImageSets/Main list: train, val, trainval, test")
    parser.add_argument("--years", nargs="+", default=None, help="e.g. 2007 2012 (root is then VOCdevkit)")
    parser.add_argument("--out", required=True, help="COCO JSON file to write")
    parser.add_argument("--image-root", default=None, help="folder file_name is relative to (default: --root)")
    parser.add_argument("--classes", nargs="+", default=None, help="classes to keep (default: the 20 VOC ones)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        convert(
            args.root, args.split, years=args.years, image_root=args.image_root, classes=args.classes, out=args.out
        )
    except (FileNotFoundError, ValueError) as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
