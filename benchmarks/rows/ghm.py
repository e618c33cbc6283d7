"""Heatmap-loss rows: a training step with each loss of the loss study against one with the penalty-reduced
focal loss (the CenterNet default): the same model and inputs, every loss's step interleaved round-robin."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.common import Row, interleaved_times, make_row, thread_label
from benchmarks.context import Context
from centernet.losses import CenterNetCriterion, build_heatmap_loss
from centernet.models import build_centernet
from centernet.targets import render_targets

FULL: dict[str, Any] = {"batch": 32, "size": 128, "repeats": 10}
QUICK: dict[str, Any] = {"batch": 4, "size": 64, "repeats": 2}
NUM_CLASSES = 5
BOXES = 6
REFERENCE = "penalty_reduced_focal"
ORIGINAL_ROW = "ghm_c (ema)"
#: row label -> (registry name, parameters); the first row keeps the label of the original GHM-C row.
LOSSES: dict[str, tuple[str, dict[str, Any]]] = {
    "ghm_c (ema)": ("ghm_c", {"bins": 10, "momentum": 0.75, "density": "ema"}),
    "ghm_c (batch)": ("ghm_c", {"bins": 10, "density": "batch"}),
    "ghm_c (ema, 30 bins)": ("ghm_c", {"bins": 30, "momentum": 0.75, "density": "ema"}),
    "ghm_c (epoch)": ("ghm_c", {"bins": 10, "density": "epoch"}),
    "ghm_c (batch_then_epoch)": ("ghm_c", {"bins": 10, "density": "batch_then_epoch"}),
    "ghm_centernet (ema)": ("ghm_centernet", {"bins": 10, "momentum": 0.75, "density": "ema"}),
    "ghm_centernet (batch_then_epoch)": ("ghm_centernet", {"bins": 10, "density": "batch_then_epoch"}),
    "focal": ("focal", {}),
    "bce": ("bce", {}),
}


def training_step_factory(heatmap_loss: str, *, batch: int, size: int) -> Callable[[], object]:
    """A full training step (targets + forward + loss + backward + Adam) of the shapes model with a heatmap loss.

    ``heatmap_loss`` is a label of :data:`LOSSES` or a registry name (default parameters).
    """
    torch.manual_seed(0)
    model = build_centernet(
        backbone="resnet18",
        backbone_weights=None,
        neck="deconv_lateral",
        neck_channels=(256, 256, 256),
        num_classes=NUM_CLASSES,
        head_conv=64,
        prior_prob=0.1,
    ).to(memory_format=torch.channels_last)
    name, params = LOSSES.get(heatmap_loss, (heatmap_loss, {}))
    criterion = CenterNetCriterion(build_heatmap_loss(name, **params))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    images = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    boxes = torch.rand(batch, BOXES, 2) * (size * 0.6)
    boxes = torch.cat([boxes, boxes + size * 0.3], dim=-1) / 4  # output grid
    labels = torch.randint(0, NUM_CLASSES, (batch, BOXES))
    valid = torch.ones(batch, BOXES, dtype=torch.bool)

    def step() -> None:
        targets = render_targets(boxes, labels, valid, num_classes=NUM_CLASSES, output_size=(size // 4, size // 4))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = model(images)
        loss = torch.stack(list(criterion(outputs, targets).values())).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def run(ctx: Context) -> list[Row]:
    """One row per loss of :data:`LOSSES` against the penalty-reduced focal step, all steps interleaved
    round-robin (one shared reference)."""
    p = QUICK if ctx.quick else FULL
    batch, size = p["batch"], p["size"]
    steps = {label: training_step_factory(label, batch=batch, size=size) for label in (*LOSSES, REFERENCE)}
    times = interleaved_times(steps, p["repeats"])
    reference_ms = statistics.median(times[REFERENCE])
    rows = []
    for label in LOSSES:
        which = "" if label == ORIGINAL_ROW else f" {label}"  # the original row keeps its name
        rows.append(
            make_row(
                f"train step, heatmap loss{which} (B={batch}, {size}px, shapes model, bf16, {thread_label()})",
                label,
                REFERENCE,
                "ms",
                statistics.median(times[label]),
                reference_ms,
                "<= 1.15",
            )
        )
    return rows
