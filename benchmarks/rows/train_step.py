"""Train-step rows: the overhead of our full step over the bare model, and its compute efficiency."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import MS_PER_S, Row, interleaved_times, make_row, thread_label
from benchmarks.context import Context
from benchmarks.trainer_setup import make_trainer
from centernet.losses import HeatmapLoss, penalty_reduced_focal_loss_reference

FULL: dict[str, Any] = {"images": 8, "image_size": (640, 480), "input": 256, "batch": 8, "repeats": 7, "matmul": 2048}
QUICK: dict[str, Any] = {"images": 2, "image_size": (80, 60), "input": 64, "batch": 2, "repeats": 1, "matmul": 128}
GIGA = 1e9
MATMUL_REPEATS = 7
FLOPS_PER_MAC = 2


def _sum_outputs(outputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.stack([value.float().sum() for value in outputs.values()]).sum()


class PlainFocalLoss(HeatmapLoss):
    """The heatmap loss as it was before the fused function: the plain autograd formula."""

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
        normaliser: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return penalty_reduced_focal_loss_reference(logits, target, mask, normaliser=normaliser)


def matmul_peak(n: int, dtype: torch.dtype) -> float:
    """GFLOP/s of an ``n x n @ n x n`` matmul in ``dtype``, from the fastest of a few runs (a peak)."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    times = interleaved_times({"mm": lambda: a @ b}, MATMUL_REPEATS)["mm"]
    return FLOPS_PER_MAC * n**3 / (min(times) / MS_PER_S) / GIGA


def run(ctx: Context) -> list[Row]:
    """Full ``Trainer.train_step`` vs bare forward + sum loss + backward + Adam step, same batch and model."""
    p: dict[str, Any] = QUICK if ctx.quick else FULL
    trainer = make_trainer(
        ctx.scratch / "train_step", images=p["images"], image_size=p["image_size"], input_size=p["input"],
        batch=p["batch"], workers=0,
    )
    batch = next(iter(trainer.train_loader))
    model, optimizer = trainer.model, trainer.optimizer
    model.train()
    images = trainer.normalizer(batch["images"])

    def bare() -> None:
        loss = _sum_outputs(model(images))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    fused_loss, plain_loss = trainer.criterion.heatmap_loss, PlainFocalLoss()

    def step_with(loss: torch.nn.Module) -> Callable[[], object]:
        def step() -> object:
            trainer.criterion.heatmap_loss = loss
            return trainer.train_step(batch)

        return step

    times = interleaved_times(
        {"ours": step_with(fused_loss), "bare": bare, "plain_loss": step_with(plain_loss)}, p["repeats"]
    )
    trainer.criterion.heatmap_loss = fused_loss
    ours_ms, bare_ms, plain_ms = (statistics.median(times[key]) for key in ("ours", "bare", "plain_loss"))

    with FlopCounterMode(display=False) as counter:
        _sum_outputs(model(images)).backward()
    optimizer.zero_grad(set_to_none=True)
    flops_per_step = counter.get_total_flops()
    achieved = flops_per_step / (ours_ms / MS_PER_S) / GIGA
    peak_fp32 = matmul_peak(p["matmul"], torch.float32)
    peak_bf16 = matmul_peak(p["matmul"], torch.bfloat16)
    size, count = p["input"], p["batch"]
    num_classes = len(trainer.metadata["class_names"])
    model_name = f"ResNet-18 + deconv neck, C={num_classes}, {size}px, B={count}, fp32, {thread_label()}"
    return [
        make_row(
            f"train step overhead, {model_name}",
            "Trainer.train_step (normalise + targets + fwd + loss + bwd + Adam)",
            "bare fwd + sum loss + bwd + Adam",
            "ms",
            ours_ms,
            bare_ms,
            "<= 1.05",
            with_plain_focal_loss_ms=plain_ms,
            ratio_with_plain_focal_loss=plain_ms / bare_ms,
        ),
        make_row(
            f"compute efficiency, {model_name}",
            "achieved in the train step",
            f"fp32 matmul peak ({p['matmul']}^2)",
            "GFLOP/s",
            achieved,
            peak_fp32,
            "report",
            gflop_per_train_image=flops_per_step / count / GIGA,
            bf16_matmul_peak_gflops=peak_bf16,
            fraction_of_bf16_peak=achieved / peak_bf16,
        ),
    ]
