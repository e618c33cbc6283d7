"""Target rendering and decoding rows: our batched tensor code against the original per-object / max-pool code."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from benchmarks.common import Row, interleaved_medians, make_row, threads
from benchmarks.context import Context
from benchmarks.reference.decode import reference_decode
from benchmarks.reference.targets import batch_targets
from centernet.decode import decode_detections
from centernet.targets import render_targets

FULL: dict[str, Any] = {"batch": 32, "classes": 80, "grid": 128, "objects": 7, "repeats": 15}
QUICK: dict[str, Any] = {"batch": 2, "classes": 4, "grid": 16, "objects": 3, "repeats": 2}
MIN_SIDE, MAX_SIDE_FRACTION = 1.6, 0.5  # box sides on the output grid: log-uniform
TOPK = 100
BACKGROUND_LOGIT = -4.0  # the heatmap logits are N(BACKGROUND_LOGIT, 1): a trained model's mostly-empty map


def random_grid_boxes(
    rng: np.random.Generator, batch: int, objects: int, grid: int, classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``boxes [B, M, 4]`` xyxy on a ``grid``-cell output map (log-uniform sides), ``labels``, ``valid``."""
    sides = np.exp(rng.uniform(np.log(MIN_SIDE), np.log(MAX_SIDE_FRACTION * grid), size=(batch, objects, 2)))
    corner = rng.uniform(0, grid, size=(batch, objects, 2)) - sides / 2
    boxes = torch.from_numpy(np.concatenate([corner, corner + sides], axis=-1).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, classes, size=(batch, objects)))
    return boxes, labels, torch.ones(batch, objects, dtype=torch.bool)


def targets_row(ctx: Context) -> Row:
    """render_targets vs the per-object numpy loop; both hand back tensors and read the heatmap once."""
    p = QUICK if ctx.quick else FULL
    batch, classes, grid = p["batch"], p["classes"], p["grid"]
    boxes, labels, valid = random_grid_boxes(np.random.default_rng(0), batch, p["objects"], grid, classes)
    boxes_np, labels_np, valid_np = boxes.numpy(), labels.numpy(), valid.numpy()

    def ours() -> None:
        out = render_targets(boxes, labels, valid, num_classes=classes, output_size=(grid, grid))
        out["heatmap"].sum()  # the loss reads the map: charge any deferred zeroing to this row

    def reference() -> None:
        arrays = batch_targets(boxes_np, labels_np, valid_np, classes, grid)
        out = {key: torch.from_numpy(value) for key, value in arrays.items()}
        out["hm"].sum()

    with threads(1):
        ours_ms, reference_ms = interleaved_medians(ours, reference, p["repeats"])
    return make_row(
        f"targets, B={batch}, C={classes}, {grid}x{grid}, {p['objects']} obj/img, 1 thread",
        "render_targets (batched)",
        "per-object numpy loop + stack",
        "ms",
        ours_ms,
        reference_ms,
        "<= 0.5",
    )


def decode_row(ctx: Context) -> Row:
    """decode_detections vs the original max-pool decode on the same maps (results are identical)."""
    p = QUICK if ctx.quick else FULL
    batch, classes, grid = p["batch"], p["classes"], p["grid"]
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(batch, classes, grid, grid, generator=gen) + BACKGROUND_LOGIT
    size = torch.rand(batch, 2, grid, grid, generator=gen) * grid / 4
    offset = torch.rand(batch, 2, grid, grid, generator=gen)
    k = min(TOPK, grid * grid)
    ours_dets = decode_detections(logits, size, offset, k=k)
    reference_dets = reference_decode(logits, size, offset, k=k)
    if not torch.equal(ours_dets[..., 4:], reference_dets[..., 4:]):
        raise AssertionError("decode_detections and the reference decode disagree on scores/classes")
    with threads(1):
        ours_ms, reference_ms = interleaved_medians(
            lambda: decode_detections(logits, size, offset, k=k),
            lambda: reference_decode(logits, size, offset, k=k),
            max(1, p["repeats"] // 3),
        )
    return make_row(
        f"decode, B={batch}, C={classes}, {grid}x{grid}, top-{k}, 1 thread",
        "decode_detections",
        "max_pool2d + topk (original)",
        "ms",
        ours_ms,
        reference_ms,
        "<= 1.0",
        identical_scores_and_classes=True,
    )


def run(ctx: Context) -> list[Row]:
    """The target-rendering and decoding rows."""
    return [targets_row(ctx), decode_row(ctx)]
