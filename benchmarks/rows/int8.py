"""int8 CPU deployment rows: the original recipe, our fastest PyTorch path, and ONNX Runtime fp32 and int8.

For two models, the trees recipe (EfficientNet-Lite0 + ``deconv_lateral`` neck, one 400x400 tile -> 384 px) and
ResNet-18 + deconv neck at 512 px (C = 80), each with random weights (speed does not depend on them): one BGR
image end to end (pre-processing, forward, decode, boxes in image pixels) at batch 1 (latency, ms) and eight
images at batch 8 (throughput, images/s). Compared, interleaved in this process:

* the original recipe (:mod:`benchmarks.reference.original_inference`, one image per forward: batch 8 is
  eight calls);
* ``Detector(optimize=...)``: ``fast`` (fold_bn, channels_last), ``fast,bf16`` where the CPU has native
  bfloat16, the faster of the two;
* :class:`~centernet.inference.exported.ExportedDetector` on the fp32 ONNX export and on its int8 QDQ model
  (ONNX Runtime, as many threads as PyTorch; calibrated on textured images, which sets ranges but not speed).

The goal (issue: int8 end to end >= 2.5x the original recipe) is on the batch-1 int8 row. Accuracy is not
measured here (random weights): ``tools/export.py --quantize int8 --verify`` reports it (docs/inference.md).
"""

from __future__ import annotations

import copy
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import Row, interleaved_times, make_row, thread_label
from benchmarks.context import Context
from benchmarks.reference.original_inference import OriginalDetector
from benchmarks.synthetic import IMAGE_SIZE, textured_image
from benchmarks.trainer_setup import BASE_CONFIG, REPO
from centernet.config import Config, load_config
from centernet.export.exporter import export_detector, export_metadata
from centernet.export.quantize import quantize_int8
from centernet.inference.exported import ExportedDetector
from centernet.inference.predictor import Detector
from centernet.models.build import build_model
from centernet.utils.env import cpu_has_fast_bf16

TREES_CONFIG = REPO / "configs" / "trees_efficientnet_lite0.yaml"
MODELS = {  # name: (config, number of classes, input px, image (width, height))
    "trees EfficientNet-Lite0": (TREES_CONFIG, 1, 384, (400, 400)),
    "ResNet-18 + deconv": (BASE_CONFIG, 80, 512, IMAGE_SIZE),
}
FULL: dict[str, Any] = {"repeats": 7, "batch": 8, "calibration": 8, "quick_input": None, "models": list(MODELS)}
QUICK: dict[str, Any] = {"repeats": 1, "batch": 2, "calibration": 1, "quick_input": 64, "models": list(MODELS)[:1]}
TOPK = 100
GOAL_SPEEDUP = 2.5


def _model(config: Path, classes: int, size: int) -> tuple[torch.nn.Module, Config]:
    cfg = load_config(config, ["model.backbone.weights=null", f"data.input_size=[{size}, {size}]"])
    torch.manual_seed(0)
    return build_model(cfg, classes).eval(), cfg


def _detectors(model: torch.nn.Module, cfg: Config, classes: int, size: int, folder: Path,
               calibration: list[np.ndarray]) -> dict[str, Any]:
    """The original recipe, our fastest PyTorch Detector, and the fp32 / int8 ONNX files run by ExportedDetector."""
    kwargs = dict(class_names=[f"class{i}" for i in range(classes)], input_size=(size, size),
                  channel_order=cfg.data.channel_order, mean=cfg.data.mean, std=cfg.data.std,
                  device=torch.device("cpu"), topk=TOPK)
    options = ["fast", "fast,bf16"] if cpu_has_fast_bf16() else ["fast"]
    detectors: dict[str, Any] = {
        "original": OriginalDetector(copy.deepcopy(model), num_classes=classes, input_size=(size, size),
                                     mean=cfg.data.mean, std=cfg.data.std, channel_order=cfg.data.channel_order,
                                     down_ratio=cfg.data.down_ratio),
        **{f"pytorch {name}": Detector(copy.deepcopy(model), optimize=name, **kwargs) for name in options},
    }
    plain = Detector(copy.deepcopy(model), **kwargs)
    fp32 = export_detector(copy.deepcopy(model), fmt="onnx", path=folder / "model.onnx", input_size=(size, size),
                           k=TOPK)
    metadata = export_metadata(plain, "onnx", TOPK, None)
    Path(f"{fp32}.json").write_text(json.dumps(metadata))
    int8 = folder / "model.int8.onnx"
    runner = ExportedDetector(fp32)
    inputs = [runner.runner.normalise(runner.transform(image).image[None]) for image in calibration]
    quantize_int8(fp32, int8, inputs)
    Path(f"{int8}.json").write_text(json.dumps(metadata))
    detectors["onnxruntime fp32"] = runner
    detectors["onnxruntime int8"] = ExportedDetector(int8)
    return detectors


def _call(name: str, detector: Any, images: list[np.ndarray]) -> Any:
    if name == "original":  # single-image recipe
        return lambda: [detector(image) for image in images]
    return lambda: detector.predict_batch(images)


def run(ctx: Context) -> list[Row]:
    """Latency (batch 1) and throughput (batch 8) of each model's four paths, interleaved."""
    p = QUICK if ctx.quick else FULL
    rows: list[Row] = []
    rng = np.random.default_rng(0)
    for label in p["models"]:
        config, classes, size, (width, height) = MODELS[label]
        size = p["quick_input"] or size
        if p["quick_input"]:
            width, height = size + 16, size
        model, cfg = _model(config, classes, size)
        image = textured_image(rng, width, height)
        calibration = [textured_image(rng, width, height) for _ in range(p["calibration"])]
        with tempfile.TemporaryDirectory() as folder:
            detectors = _detectors(model, cfg, classes, size, Path(folder), calibration)
            for batch in (1, p["batch"]):
                images = [image] * batch
                times = interleaved_times({name: _call(name, d, images) for name, d in detectors.items()},
                                          p["repeats"])
                medians = {name: statistics.median(values) for name, values in times.items()}
                rows += _rows(label, size, (width, height), batch, medians)
    return rows


def _rows(label: str, size: int, image: tuple[int, int], batch: int, medians: dict[str, float]) -> list[Row]:
    """Batch 1: milliseconds per call (goal on int8); batch > 1: images per second (report)."""
    name = f"end-to-end inference, {label}, {image[0]}x{image[1]} -> {size}px, B={batch}, {thread_label()}"
    reference = "original recipe (one image per forward, fp32 NCHW, NumPy pre/post-processing)"
    pytorch = min((key for key in medians if key.startswith("pytorch")), key=medians.__getitem__)
    figures = {"all_medians_ms": medians, "fastest_pytorch": pytorch}
    rows = []
    for ours in ("onnxruntime int8", "onnxruntime fp32", pytorch):
        goal = f"<= {1 / GOAL_SPEEDUP:.3f}" if batch == 1 and ours == "onnxruntime int8" else "report"
        if batch == 1:
            rows.append(make_row(f"{name}, {ours}", ours, reference, "ms", medians[ours], medians["original"], goal,
                                 speedup=medians["original"] / medians[ours], **figures))
        else:
            per_s = {key: batch / (value / 1000.0) for key, value in medians.items()}
            rows.append(make_row(f"{name}, {ours}", ours, reference, "images/s", per_s[ours], per_s["original"],
                                 "report", **figures))
    return rows
