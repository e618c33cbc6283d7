"""Optimizers and the per-iteration learning-rate schedule (step decay with linear warmup)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch.optim.lr_scheduler import LambdaLR

from centernet.config.schema import SolverConfig


def build_optimizer(params: Iterable[torch.nn.Parameter], solver: SolverConfig) -> torch.optim.Optimizer:
    """Create the optimizer named by ``solver.optimizer`` (adam | adamw | sgd)."""
    params = [p for p in params if p.requires_grad]
    if solver.optimizer == "adam":
        return torch.optim.Adam(params, lr=solver.lr, weight_decay=solver.weight_decay)
    if solver.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=solver.lr, weight_decay=solver.weight_decay)
    return torch.optim.SGD(params, lr=solver.lr, momentum=solver.momentum, weight_decay=solver.weight_decay)


def step_lr_factor(
    iteration: int,
    *,
    iters_per_epoch: int,
    lr_steps: Sequence[int],
    gamma: float,
    warmup_iters: int,
    warmup_factor: float,
) -> float:
    """Learning-rate multiplier at a global iteration.

    ``gamma ** (number of lr_steps epochs already reached)``, times a linear ramp from
    ``warmup_factor`` to 1 over the first ``warmup_iters`` iterations.
    """
    epoch = iteration // max(iters_per_epoch, 1)
    factor = gamma ** sum(1 for step in lr_steps if epoch >= step)
    if iteration < warmup_iters:
        progress = iteration / warmup_iters
        factor *= warmup_factor + (1.0 - warmup_factor) * progress
    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, solver: SolverConfig, iters_per_epoch: int) -> LambdaLR:
    """Per-iteration scheduler (call ``step()`` after every optimizer step)."""
    steps = tuple(solver.lr_steps)

    def factor(iteration: int) -> float:
        return step_lr_factor(
            iteration,
            iters_per_epoch=iters_per_epoch,
            lr_steps=steps,
            gamma=solver.lr_gamma,
            warmup_iters=solver.warmup_iters,
            warmup_factor=solver.warmup_factor,
        )

    return LambdaLR(optimizer, factor)
