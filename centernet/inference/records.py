"""Detection records from elsewhere (``tools/demo.py``, a VOC-style results file) matched to a dataset.

A COCO results record names its image by an integer ``image_id`` and its class by ``category_id``. A file
written without the annotation file at hand may instead name the image by ``file_name`` (the annotated
one or its last part) or by a string ``image_id`` (VOC: the id of the split file, such as ``000001``), and
the class by ``category_name`` or ``label``. :func:`resolve_records` turns such records into COCO ones.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from centernet.data.base import DetectionDataset

MAX_EXAMPLES = 3


def resolve_records(records: Sequence[Mapping[str, Any]], dataset: DetectionDataset, source: str
                    ) -> list[dict[str, Any]]:
    """Records with an integer ``image_id`` of ``dataset`` and a ``category_id`` of its classes.

    Raises:
        ValueError: ``"<source>: detection record <i>: ..."`` for an image or a class that ``dataset`` does
            not have, saying which names and ids are accepted.
    """
    by_name = _images_by_name(dataset)
    known_ids = set(dataset.image_ids)
    categories = dict(zip(dataset.class_names, dataset.label_to_category_id, strict=True))
    resolved = []
    for index, record in enumerate(records):
        where = f"{source}: detection record {index}"
        image_id = _image_id(record, by_name, known_ids, dataset, where)
        category_id = _category_id(record, categories, dataset, where)
        resolved.append({**record, "image_id": image_id, "category_id": category_id})
    return resolved


def _images_by_name(dataset: DetectionDataset) -> dict[str, int]:
    names: dict[str, int] = {}
    for index, image_id in enumerate(dataset.image_ids):
        for name in dataset.image_names(index):
            names.setdefault(name, image_id)
    return names


def _as_int(value: object) -> int | None:
    """``value`` as an int when it is an integer (not a bool), else None."""
    return int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else None


def _image_id(record: Mapping[str, Any], by_name: Mapping[str, int], known_ids: set[int], dataset: DetectionDataset,
              where: str) -> int:
    value = record.get("image_id")
    number = _as_int(value)
    if number is not None and number in known_ids:
        return number
    for key in ("image_id", "file_name"):
        name = record.get(key)
        if isinstance(name, str) and name in by_name:
            return by_name[name]
    shown = value if value is not None else record.get("file_name")
    raise ValueError(f"{where}: image {shown!r} is not an image of the val set; {_accepted_images(dataset)}")


def _accepted_images(dataset: DetectionDataset) -> str:
    """What an image may be called, with examples from ``dataset``."""
    ids = dataset.image_ids[:MAX_EXAMPLES]
    names = [dataset.image_names(i)[0] for i in range(min(MAX_EXAMPLES, len(dataset))) if dataset.image_names(i)]
    text = f"accepted: an integer 'image_id' of the annotations (e.g. {ids}"
    if hasattr(dataset, "records"):  # VOC: ids are positions in the split file
        text += f", i.e. 1..{len(dataset)} in split order"
    return f"{text}) or the image's name as 'image_id' or 'file_name' (e.g. {names})"


def _category_id(record: Mapping[str, Any], categories: Mapping[str, int], dataset: DetectionDataset,
                 where: str) -> int:
    if "category_id" in record:
        value = record["category_id"]
        number = _as_int(value)
        if number is not None and number in dataset.category_id_to_label:
            return number
        raise ValueError(f"{where}: category_id {value!r} is not a class of the val set; accepted: "
                         f"{sorted(dataset.category_id_to_label)} ({', '.join(dataset.class_names)})")
    if "category_name" in record:
        name = record["category_name"]
        if name in categories:
            return categories[name]
        raise ValueError(f"{where}: category_name {name!r} is not a class of the val set; accepted: "
                         f"{list(dataset.class_names)}")
    label = record.get("label")
    number = _as_int(label)
    if number is not None and 0 <= number < len(dataset.class_names):
        return dataset.label_to_category_id[number]
    last = len(dataset.class_names) - 1
    raise ValueError(f"{where}: label {label!r} is not a class index of the val set (0..{last})")
