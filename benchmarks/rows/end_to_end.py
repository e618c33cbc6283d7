"""End-to-end CPU inference row: ``Detector`` with its speed-ups against the original CenterNet recipe.

Both take one BGR photo and return boxes in its pixels. The reference is the original single-image
path (:mod:`benchmarks.reference.original_inference`): NumPy pre-processing, fp32 NCHW forward,
``max_pool2d`` decode, NumPy post-processing. Ours is :class:`~centernet.inference.predictor.Detector`
with ``optimize=...`` (see :mod:`centernet.inference.optimize`); the plain ``Detector`` is timed
too, to show what the optimisations add.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from benchmarks.common import Row, interleaved_times, make_row, thread_label
from benchmarks.context import Context
from benchmarks.reference.original_inference import OriginalDetector
from benchmarks.synthetic import IMAGE_SIZE, textured_image
from benchmarks.trainer_setup import BASE_CONFIG
from centernet.config import load_config
from centernet.inference.predictor import Detector
from centernet.models.build import build_model
from centernet.utils.env import cpu_has_fast_bf16

FULL: dict[str, Any] = {"input": 512, "image_size": IMAGE_SIZE, "repeats": 9, "compile": True}
QUICK: dict[str, Any] = {"input": 64, "image_size": (80, 60), "repeats": 2, "compile": False}
NUM_CLASSES = 80
TOPK = 100
GOAL_SPEEDUP = 1.5


def _detector(model: torch.nn.Module, cfg: Any, size: int, optimize: str | None) -> Detector:
    return Detector(
        copy.deepcopy(model), class_names=[f"class{i}" for i in range(NUM_CLASSES)], input_size=(size, size),
        channel_order=cfg.data.channel_order, mean=cfg.data.mean, std=cfg.data.std, device=torch.device("cpu"),
        topk=TOPK, optimize=optimize,
    )


def _bind(detector: Detector, image: np.ndarray) -> Callable[[], object]:
    return lambda: detector(image)


def run(ctx: Context) -> list[Row]:
    """One image through the original recipe, the plain Detector and the optimised Detectors, interleaved."""
    p = QUICK if ctx.quick else FULL
    size = p["input"]
    cfg = load_config(BASE_CONFIG, ["model.backbone.weights=null", f"data.input_size=[{size}, {size}]"])
    torch.manual_seed(0)
    model = build_model(cfg, NUM_CLASSES).eval()
    image = textured_image(np.random.default_rng(0), *p["image_size"])
    original = OriginalDetector(
        copy.deepcopy(model), num_classes=NUM_CLASSES, input_size=(size, size), mean=cfg.data.mean,
        std=cfg.data.std, channel_order=cfg.data.channel_order, down_ratio=cfg.data.down_ratio,
    )
    variants = {"fast": "fast"}
    if p["compile"]:
        variants["fast,compile"] = "fast,compile"
    bf16 = cpu_has_fast_bf16()
    if bf16:
        variants["fast,bf16"] = "fast,bf16"
    detectors = {"plain": _detector(model, cfg, size, None)}
    first_call_s: dict[str, float] = {}
    for name, optimize in variants.items():
        detectors[name] = _detector(model, cfg, size, optimize)
        start = time.perf_counter()
        detectors[name](image)  # the compile variant compiles here
        first_call_s[name] = time.perf_counter() - start
    callables: dict[str, Callable[[], object]] = {"original": lambda: original(image)}
    for name, detector in detectors.items():
        callables[name] = _bind(detector, image)
    times = interleaved_times(callables, p["repeats"])
    medians = {name: statistics.median(values) for name, values in times.items()}
    label = (
        f"end-to-end inference, {p['image_size'][0]}x{p['image_size'][1]} photo -> {size}px, B=1, "
        f"ResNet-18 + deconv neck, C={NUM_CLASSES}, {thread_label()}"
    )
    reference = "original recipe: NumPy pre-processing, fp32 NCHW forward, max_pool2d decode, NumPy post-processing"
    exact = [name for name in variants if "bf16" not in name]
    best = min(exact, key=lambda name: medians[name])
    rows = [
        make_row(
            f"{label}, fp32, Detector(optimize={best!r})", f"Detector(optimize={best!r})", reference, "ms",
            medians[best], medians["original"], f"<= {1 / GOAL_SPEEDUP:.3f}",
            speedup=medians["original"] / medians[best], steps_of_fast="fold_bn, channels_last",
            first_call_s=first_call_s[best], all_medians_ms=medians, first_calls_s=first_call_s,
            bf16="measured" if bf16 else "skipped: this CPU has no native bfloat16 (AVX512-BF16 / AMX)",
        ),
        make_row(
            f"{label}, fp32, plain Detector", "Detector() (no optimisation)", reference, "ms",
            medians["plain"], medians["original"], "report",
        ),
    ]
    rows += [
        make_row(
            f"{label}, fp32, Detector(optimize={name!r})", f"Detector(optimize={name!r})", reference, "ms",
            medians[name], medians["original"], "report", first_call_s=first_call_s[name],
        )
        for name in variants
        if name != best
    ]
    return rows
