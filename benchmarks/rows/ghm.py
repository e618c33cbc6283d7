"""GHM-C row: a training step with the GHM-C heatmap loss against one with the penalty-reduced focal loss."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from benchmarks.common import Row, interleaved_medians, make_row, thread_label
from benchmarks.context import Context
from centernet.losses import CenterNetCriterion, build_heatmap_loss
from centernet.models import build_centernet
from centernet.targets import render_targets

FULL: dict[str, Any] = {"batch": 32, "size": 128, "repeats": 10}
QUICK: dict[str, Any] = {"batch": 4, "size": 64, "repeats": 2}
NUM_CLASSES = 5
BOXES = 6


def training_step_factory(heatmap_loss: str, *, batch: int, size: int) -> Callable[[], object]:
    """A full training step (targets + forward + loss + backward + Adam) of the shapes model with a heatmap loss."""
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
    params = {"ghm_c": {"bins": 10, "momentum": 0.75, "density": "ema"}}.get(heatmap_loss, {})
    criterion = CenterNetCriterion(build_heatmap_loss(heatmap_loss, **params))
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
    """The two losses' steps, interleaved."""
    p = QUICK if ctx.quick else FULL
    batch, size = p["batch"], p["size"]
    ours_ms, reference_ms = interleaved_medians(
        training_step_factory("ghm_c", batch=batch, size=size),
        training_step_factory("penalty_reduced_focal", batch=batch, size=size),
        p["repeats"],
    )
    return [
        make_row(
            f"train step, heatmap loss (B={batch}, {size}px, shapes model, bf16, {thread_label()})",
            "ghm_c (ema)",
            "penalty_reduced_focal",
            "ms",
            ours_ms,
            reference_ms,
            "<= 1.15",
        )
    ]
