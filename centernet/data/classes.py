"""How many classes a config's model has, without building the datasets (no image is read).

Used where a model is built without a checkpoint or a training set at hand (``tools/model_info.py``,
``tools/benchmark.py`` without ``--checkpoint``).
"""

from __future__ import annotations

import json
from pathlib import Path

from centernet.config.schema import CocoDatasetConfig, Config, VocDatasetConfig
from centernet.data.voc import VOC_CLASSES

COCO_NUM_CLASSES = 80


def config_num_classes(cfg: Config) -> tuple[int, str]:
    """The number of heatmap classes of ``cfg`` and where it comes from.

    ``data.classes`` when set; else the 20 VOC classes for a VOC set; else the categories of the first
    COCO annotation file that exists (val, then train); else COCO's 80.
    """
    if cfg.data.classes:
        return len(cfg.data.classes), "data.classes"
    if isinstance(cfg.data.train, VocDatasetConfig):
        return len(VOC_CLASSES), "the VOC classes"
    for split, dataset in (("val", cfg.data.val), ("train", cfg.data.train)):
        if isinstance(dataset, CocoDatasetConfig) and dataset.ann_file and Path(dataset.ann_file).is_file():
            return _count_categories(Path(dataset.ann_file)), f"the categories of data.{split}.ann_file"
    return COCO_NUM_CLASSES, "no annotation file found: COCO's 80"


def _count_categories(ann_file: Path) -> int:
    try:
        categories = json.loads(ann_file.read_text(encoding="utf-8")).get("categories")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as error:
        raise ValueError(f"{ann_file}: not a COCO annotation file ({error})") from error
    if not isinstance(categories, list) or not categories:
        raise ValueError(f"{ann_file}: expected a non-empty 'categories' list")
    return len(categories)
