"""Heatmap-loss rows: the fused penalty-reduced focal loss (eager and compiled) against the plain formula."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.common import Row, interleaved_times, make_row, thread_label
from benchmarks.context import Context
from centernet.losses import penalty_reduced_focal_loss, penalty_reduced_focal_loss_reference

# The heatmap of the train-step row (256 px input, stride 4, 80 classes, batch 8) and a COCO-size one.
FULL: list[dict[str, Any]] = [
    {"batch": 8, "classes": 80, "size": 64, "repeats": 11},
    {"batch": 16, "classes": 80, "size": 128, "repeats": 5},
]
QUICK: list[dict[str, Any]] = [{"batch": 2, "classes": 4, "size": 16, "repeats": 2}]
POSITIVES_PER_IMAGE = 7
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def heatmap_inputs(batch: int, classes: int, size: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Logits, Gaussian-like targets with a few exact centres, and a ``[B, 1, H, W]`` ignore mask."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, size, size, generator=gen) * 2 - 4
    target = torch.rand(batch, classes, size, size, generator=gen) ** 8 * 0.99
    flat = target.view(batch, -1)
    centres = torch.randint(0, flat.shape[1], (batch, POSITIVES_PER_IMAGE), generator=gen)
    flat.scatter_(1, centres, 1.0)
    mask = (torch.rand(batch, 1, size, size, generator=gen) > 0.02).float()
    return logits, target, mask


def _step(loss_fn: LossFn, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> Callable[[], None]:
    """One forward + backward of ``loss_fn`` on a fresh leaf copy of ``logits``."""

    def run() -> None:
        x = logits.detach().clone().requires_grad_(True)
        loss_fn(x, target, mask).backward()

    return run


def _compiled(x: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return penalty_reduced_focal_loss(x, target, mask, backend="compiled")


def _eager(x: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return penalty_reduced_focal_loss(x, target, mask, backend="eager")


def _reference(x: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return penalty_reduced_focal_loss_reference(x, target, mask)


def run(ctx: Context) -> list[Row]:
    """Forward + backward of the loss: eager fused and compiled fused vs the plain autograd formula."""
    rows: list[Row] = []
    for p in QUICK if ctx.quick else FULL:
        logits, target, mask = heatmap_inputs(p["batch"], p["classes"], p["size"])
        callables = {"eager": _step(_eager, logits, target, mask), "reference": _step(_reference, logits, target, mask)}
        compile_s = None
        if not ctx.quick:  # compiling takes seconds per shape: full runs only
            start = time.perf_counter()
            _step(_compiled, logits, target, mask)()
            compile_s = time.perf_counter() - start
            callables["compiled"] = _step(_compiled, logits, target, mask)
        times = interleaved_times(callables, p["repeats"])
        medians = {name: statistics.median(values) for name, values in times.items()}
        label = (
            f"penalty-reduced focal fwd+bwd, B={p['batch']}, C={p['classes']}, {p['size']}x{p['size']}, "
            f"[B,1,H,W] mask, fp32, {thread_label()}"
        )
        rows.append(
            make_row(
                f"{label}, eager", "fused autograd function, eager (cache-sized chunks)",
                "plain formula (autograd)", "ms", medians["eager"], medians["reference"], "<= 0.5",
            )
        )
        if "compiled" in medians:
            rows.append(
                make_row(
                    f"{label}, compiled", "fused autograd function, torch.compile kernels",
                    "plain formula (autograd)", "ms", medians["compiled"], medians["reference"], "report",
                    first_call_s=compile_s, compiled_over_eager=medians["compiled"] / medians["eager"],
                    first_call_note="compile time of this shape (cached kernels load in well under a second)",
                )
            )
    return rows
