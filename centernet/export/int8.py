"""``tools/export.py --quantize int8``: calibration images, the int8 model beside the fp32 one, and its accuracy.

The calibration images come from the training set (default), a named val set or a folder, never from the set
that reports accuracy; :func:`compare_accuracy` scores the fp32 and int8 files on that set with the project's
own evaluation (docs/inference.md, "int8").
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from centernet.config import Config
from centernet.data.build import build_dataset, build_val_datasets
from centernet.export.quantize import KEEP_FLOAT, quantize_int8
from centernet.export.windows import ExportedWindows
from centernet.inference.evaluator import detections_for_dataset, score_detections
from centernet.inference.exported import ExportedDetector
from centernet.inference.merge import box_iou_one_to_many
from centernet.inference.tta import run_tta_inference
from centernet.utils.image_files import image_files_in, read_bgr

TRAIN_SET = "train"
AGREEMENT_IOU = 0.5  # an int8 box agrees with an fp32 box of the same class overlapping it this much


def int8_path(fp32_path: Path) -> Path:
    """``model.onnx`` -> ``model.int8.onnx``."""
    return fp32_path.with_name(f"{fp32_path.stem}.int8{fp32_path.suffix}")


def calibration_images(cfg: Config, source: str | None, count: int) -> tuple[list[np.ndarray], str]:
    """``count`` BGR images to calibrate on and a description: ``source`` a folder, a named val set, or
    ``None`` for the training set (its first ``count`` images).

    Raises:
        ValueError: the set does not exist or has no images, or ``count < 1``.
    """
    if count < 1:
        raise ValueError(f"--calibration-images must be >= 1, got {count}")
    if source is not None and Path(source).is_dir():
        paths = image_files_in(Path(source))[:count]
        if not paths:
            raise ValueError(f"--calibration-set {source}: the folder holds no images")
        return [read_bgr(path) for path in paths], f"folder {source}"
    name = source or TRAIN_SET
    if name == TRAIN_SET:
        dataset = build_dataset(cfg, "train")
    else:
        try:
            ((_, dataset),) = build_val_datasets(cfg, name)
        except ValueError as error:
            raise ValueError(f"--calibration-set {name}: not a folder, '{TRAIN_SET}' or a val set ({error})") from None
    if len(dataset) == 0:
        raise ValueError(f"--calibration-set {name}: the set has no images")
    return [dataset.load_raw(i)["image"] for i in range(min(count, len(dataset)))], f"set {name}"


def network_inputs(runner: ExportedWindows, images: list[np.ndarray]) -> list[np.ndarray]:
    """Each image as the exported model's normalised float32 ``[1, 3, H, W]`` input (the validation warp)."""
    from centernet.data.transforms import ValTransform

    transform = ValTransform(input_size=runner.input_size, channel_order=runner.channel_order)
    return [runner.normalise(transform(image).image[None]) for image in images]


def write_int8(fp32: Path, cfg: Config, source: str | None, count: int, method: str,
               keep_float: Sequence[str] = KEEP_FLOAT) -> tuple[Path, dict[str, Any]]:
    """Quantize ``fp32`` into ``model.int8.onnx`` with its own ``.json`` (the fp32 metadata plus ``quantization``)."""
    runner = ExportedWindows(fp32)
    images, described = calibration_images(cfg, source, count)
    target = int8_path(fp32)
    info = quantize_int8(fp32, target, network_inputs(runner, images), method=method, keep_float=keep_float)
    quantization = {"type": "int8", "format": "QDQ", "weights": "int8 per channel", "activations": "uint8",
                    "calibration": described, **info}
    Path(f"{target}.json").write_text(json.dumps({**runner.metadata, "quantization": quantization}, indent=1))
    return target, quantization


def compare_accuracy(fp32: Path, int8: Path, cfg: Config, name: str | None) -> dict[str, Any]:
    """COCO AP / AP50 of both files on the val set ``name`` (default: the first) and how many of the int8
    boxes scoring at least ``eval.score_threshold`` have an fp32 box of the same class at IoU >= 0.5."""
    (set_name, dataset), = build_val_datasets(cfg, name) if name else build_val_datasets(cfg)[:1]
    report: dict[str, Any] = {"set": set_name}
    rows = {}
    for label, path in (("fp32", fp32), ("int8", int8)):
        model = ExportedDetector(path)
        results = run_tta_inference(_rows_of(model), dataset, progress=False)
        metrics = score_detections(dataset, detections_for_dataset(dataset, results), metric=cfg.eval.metric,
                                   backend=cfg.eval.backend, out_dir=None, score_threshold=cfg.eval.score_threshold,
                                   pr_iou=cfg.eval.pr_iou, max_dets=cfg.eval.max_dets)
        report[label] = {key: metrics.get(key) for key in ("AP", "AP50")}
        rows[label] = [dets for _, dets in results]
    report["box_agreement"] = _agreement(rows["fp32"], rows["int8"], cfg.eval.score_threshold)
    return report


def _rows_of(model: ExportedDetector) -> Callable[[np.ndarray], np.ndarray]:
    return lambda image: model(image).rows()


def _agreement(reference: list[np.ndarray], candidate: list[np.ndarray], threshold: float) -> float:
    agreed = total = 0
    for ref, cand in zip(reference, candidate, strict=True):
        ref = ref[ref[:, 4] >= threshold]
        for row in cand[cand[:, 4] >= threshold]:
            total += 1
            same = ref[ref[:, 5] == row[5]]
            agreed += bool(same.size) and bool(box_iou_one_to_many(row[:4], same[:, :4]).max() >= AGREEMENT_IOU)
    return agreed / total if total else 1.0


def reject(int8: Path) -> Path:
    """Move the int8 model (and its ``.json``) to ``model.int8.rejected.onnx``: kept, but not shipped by name."""
    target = int8.with_name(f"{int8.stem}.rejected{int8.suffix}")
    shutil.move(str(int8), str(target))
    shutil.move(f"{int8}.json", f"{target}.json")
    return target
