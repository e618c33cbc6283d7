"""A real :class:`~centernet.engine.trainer.Trainer` on a synthetic COCO set, for the step and memory rows."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from benchmarks.synthetic import write_coco_set
from centernet.config import load_config
from centernet.engine.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
BASE_CONFIG = REPO / "configs" / "centernet_resnet18_coco_512.yaml"  # ResNet-18 + 3 x 256 deconv neck, 64-ch heads


def synthetic_overrides(
    folder: Path, *, images: int, image_size: tuple[int, int], input_size: int, batch: int, workers: int
) -> list[str]:
    """Write a synthetic COCO set under ``folder/data`` and return the config overrides that train on it.

    Args:
        folder: scratch folder.
        images: training (and validation) images.
        image_size: ``(width, height)`` of the JPEGs.
        input_size: square network input side.
        batch: batch size.
        workers: loader worker processes.

    Returns:
        ``key=value`` overrides of :data:`BASE_CONFIG` (random init, CPU, this data).
    """
    ann_file, img_dir = write_coco_set(folder / "data", images, image_size=image_size)
    return [
        "model.backbone.weights=null",
        f"data.train={{type: coco, ann_file: {ann_file}, img_dir: {img_dir}}}",
        f"data.val={{type: coco, ann_file: {ann_file}, img_dir: {img_dir}}}",
        f"data.input_size=[{input_size}, {input_size}]",
        f"data.batch_size={batch}",
        f"data.workers={workers}",
        "runtime.device=cpu",
        "runtime.log_interval=1000000",
    ]


def make_trainer(
    folder: Path, *, images: int, image_size: tuple[int, int], input_size: int, batch: int, workers: int,
    extra: Sequence[str] = (),
) -> Trainer:
    """The ResNet-18 CenterNet trainer on a synthetic set (see :func:`synthetic_overrides`), progress bars off;
    ``extra`` overrides come last (e.g. the TTFNet options)."""
    overrides = synthetic_overrides(
        folder, images=images, image_size=image_size, input_size=input_size, batch=batch, workers=workers
    )
    cfg = load_config(BASE_CONFIG, [*overrides, *extra])
    logging.getLogger("centernet").setLevel(logging.WARNING)
    return Trainer.from_config(cfg, folder / "work", progress=False)
