"""Sliced inference rows: our batched windows against SAHI's approach (one model call per window).

SAHI's ``get_sliced_prediction`` crops each window, runs the detector on it alone (batch 1, through the
detector's own pre-processing), shifts the boxes and merges them at the end. The reference here does the
same with the same model in the same process: ``Detector.predict_batch([window])`` per window, boxes
shifted by the window's origin, one ``torchvision.ops.batched_nms`` over all. Ours is
``Detector.predict_sliced``: windows read and resized into batches, one forward per batch, the seam merge
(docs/inference.md, "Large images"). The image is a synthetic texture; the cost does not depend on the content.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torchvision.ops import batched_nms

from benchmarks.common import MS_PER_S, Row, interleaved_medians, make_row, thread_label
from benchmarks.context import Context
from benchmarks.synthetic import textured_image
from benchmarks.trainer_setup import REPO
from centernet.config import load_config
from centernet.inference.predictor import Detector
from centernet.inference.slicing import SliceSettings
from centernet.models.build import build_model
from centernet.utils.env import cpu_has_fast_bf16

TREES_CONFIG = REPO / "configs" / "trees_efficientnet_lite0.yaml"
FULL: dict[str, Any] = {"image": (1600, 1200), "window": 384, "batch": 8, "repeats": 5}
QUICK: dict[str, Any] = {"image": (160, 96), "window": 64, "batch": 4, "repeats": 1}
OVERLAP = 0.2
NMS_IOU = 0.5


def trees_detector(input_size: int, optimize: str | None = None, amp: str = "off") -> Detector:
    """The demo recipe's model (EfficientNet-Lite0 + deconv_lateral, random weights: same cost) on the CPU."""
    cfg = load_config(TREES_CONFIG, ["model.backbone.weights=null", f"data.input_size=[{input_size},{input_size}]"])
    torch.manual_seed(0)
    return Detector(build_model(cfg, 1), class_names=["tree"], input_size=(input_size, input_size),
                    channel_order=cfg.data.channel_order, mean=cfg.data.mean, std=cfg.data.std,
                    device=torch.device("cpu"), amp=amp, optimize=optimize)


def per_window_calls(detector: Detector, image: np.ndarray, settings: SliceSettings) -> np.ndarray:
    """SAHI's loop: each window through the detector alone, boxes shifted, one NMS at the end."""
    rows = []
    for tile in settings.windows(*image.shape[:2]):
        window_rows = detector.predict_batch([image[tile.y0 : tile.y1, tile.x0 : tile.x1]])[0].rows()
        window_rows[:, [0, 2]] += tile.x0
        window_rows[:, [1, 3]] += tile.y0
        rows.append(window_rows)
    merged = np.concatenate(rows)
    keep = batched_nms(torch.from_numpy(merged[:, :4]), torch.from_numpy(merged[:, 4]),
                       torch.from_numpy(merged[:, 5].astype(np.int64)), NMS_IOU).numpy()
    return merged[keep]


def run(ctx: Context) -> list[Row]:
    """Windows/s of ``predict_sliced`` (fp32 one window at a time and batched, and with the fastest CPU options)
    over the per-window loop with the plain fp32 model."""
    p = QUICK if ctx.quick else FULL
    width, height = p["image"]
    image = textured_image(np.random.default_rng(0), width, height)
    settings = SliceSettings(size=p["window"], overlap=OVERLAP)
    windows = len(settings.windows(height, width))
    megapixels = width * height / 1e6
    reference = trees_detector(p["window"])
    amp = "bf16" if cpu_has_fast_bf16() else "off"  # bf16 only where the CPU runs it natively
    variants = [  # (label, detector, windows per batch): each at its best batch on the 2-core CPU measured
        ("fp32", trees_detector(p["window"]), 1),
        ("fp32", trees_detector(p["window"]), p["batch"]),
        (f"fold_bn + channels_last{' + bf16' if amp == 'bf16' else ''}",
         trees_detector(p["window"], optimize="fast", amp=amp), 2),
    ]
    rows = []
    for label, detector, batch in variants:
        ours_settings = dataclasses.replace(settings, batch_size=batch)
        ours_ms, reference_ms = interleaved_medians(lambda d=detector, s=ours_settings: d.predict_sliced(image, s),
                                                    lambda: per_window_calls(reference, image, settings),
                                                    p["repeats"])
        ours_rate, reference_rate = windows / (ours_ms / MS_PER_S), windows / (reference_ms / MS_PER_S)
        rows.append(make_row(
            f"sliced inference ({label}, batch {batch}), {width}x{height} image, {windows} windows of {p['window']} px "
            f"({OVERLAP:g} overlap), EfficientNet-Lite0 trees model, {thread_label()}",
            f"Detector.predict_sliced, batches of {batch}, {label}",
            "per-window calls (SAHI's approach), fp32",
            "windows/s", ours_rate, reference_rate, ">= 2",
            ours_megapixels_per_s=megapixels / (ours_ms / MS_PER_S),
            reference_megapixels_per_s=megapixels / (reference_ms / MS_PER_S),
            ours_ms=ours_ms, reference_ms=reference_ms,
        ))
    return rows
