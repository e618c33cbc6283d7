"""Inference rows: the whole single-image path against the bare forward, and decoding's share of it."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from benchmarks.common import Row, interleaved_medians, make_row, thread_label
from benchmarks.context import Context
from benchmarks.synthetic import IMAGE_SIZE, textured_image
from benchmarks.trainer_setup import BASE_CONFIG
from centernet.config import load_config
from centernet.decode import decode_detections
from centernet.inference.predictor import Detector
from centernet.models.build import build_model

FULL: dict[str, Any] = {"input": 512, "image_size": IMAGE_SIZE, "repeats": 15}
QUICK: dict[str, Any] = {"input": 64, "image_size": (80, 60), "repeats": 2}
NUM_CLASSES = 80
TOPK = 100


def run(ctx: Context) -> list[Row]:
    """``Detector(image)`` (affine + normalise + forward + decode + map back) vs ``model(x)``; decode vs forward."""
    p = QUICK if ctx.quick else FULL
    size = p["input"]
    cfg = load_config(BASE_CONFIG, ["model.backbone.weights=null", f"data.input_size=[{size}, {size}]"])
    torch.manual_seed(0)
    model = build_model(cfg, NUM_CLASSES).eval()
    detector = Detector(
        model, class_names=[f"class{i}" for i in range(NUM_CLASSES)], input_size=(size, size),
        channel_order=cfg.data.channel_order, mean=cfg.data.mean, std=cfg.data.std, device=torch.device("cpu"),
        topk=TOPK,
    )
    image = textured_image(np.random.default_rng(0), *p["image_size"])
    inputs = torch.randn(1, 3, size, size)

    def bare() -> dict[str, torch.Tensor]:
        with torch.inference_mode():
            return model(inputs)

    ours_ms, forward_ms = interleaved_medians(lambda: detector(image), bare, p["repeats"])
    maps = {key: value.float() for key, value in bare().items()}
    decode_ms, forward2_ms = interleaved_medians(
        lambda: decode_detections(maps["heatmap"], maps["size"], maps["offset"], k=TOPK), bare, p["repeats"]
    )
    label = f"B=1, {size}px, ResNet-18 + deconv neck, C={NUM_CLASSES}, fp32, {thread_label()}"
    return [
        make_row(
            f"inference overhead, {label}",
            "Detector(image): affine + normalise + fwd + decode + map back",
            "bare forward",
            "ms",
            ours_ms,
            forward_ms,
            "<= 1.15",
        ),
        make_row(
            f"decode share, {label}",
            "decode_detections",
            "bare forward",
            "ms",
            decode_ms,
            forward2_ms,
            "<= 0.05",
        ),
    ]
