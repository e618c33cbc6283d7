"""TTFNet-options row: the training step with TTFNet's targets, ltrb head and GIoU loss vs CenterNet's.

Both trainers have the same backbone and neck, the same seed and synthetic data, and step on the same batch,
alternately; only the target renderer, the box head and the box loss differ.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import Row, interleaved_medians, make_row, thread_label
from benchmarks.context import Context
from benchmarks.trainer_setup import make_trainer

FULL: dict[str, Any] = {"images": 8, "image_size": (640, 480), "input": 256, "batch": 8, "repeats": 7}
QUICK: dict[str, Any] = {"images": 2, "image_size": (80, 60), "input": 64, "batch": 2, "repeats": 1}
TTFNET = ("target.heatmap=elliptical", "target.box=gaussian_area", "model.head.box=ltrb", "loss.box.type=giou")


def run(ctx: Context) -> list[Row]:
    """``Trainer.train_step`` with the TTFNet options vs the CenterNet step, same batch, interleaved."""
    p: dict[str, Any] = QUICK if ctx.quick else FULL
    sizes = {"images": p["images"], "image_size": p["image_size"], "input_size": p["input"], "batch": p["batch"]}
    centernet = make_trainer(ctx.scratch / "centernet_step", workers=0, **sizes)
    ttfnet = make_trainer(ctx.scratch / "ttfnet_step", workers=0, extra=TTFNET, **sizes)
    batch = next(iter(centernet.train_loader))
    ttf_ms, centernet_ms = interleaved_medians(lambda: ttfnet.train_step(batch), lambda: centernet.train_step(batch),
                                               p["repeats"])
    size, count = p["input"], p["batch"]
    num_classes = len(centernet.metadata["class_names"])
    name = f"ResNet-18 + deconv neck, C={num_classes}, {size}px, B={count}, fp32, {thread_label()}"
    return [
        make_row(
            f"TTFNet-options train step, {name}",
            "elliptical heatmap + gaussian_area box targets + ltrb head + GIoU",
            "CenterNet targets + size/offset heads + L1",
            "ms",
            ttf_ms,
            centernet_ms,
            "<= 1.15",
        )
    ]
