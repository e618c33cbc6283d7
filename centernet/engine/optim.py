"""Optimizers, the linear lr scaling rule and the per-iteration schedules (step | cosine, linear warmup)."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from centernet.config.schema import SolverConfig

logger = logging.getLogger(__name__)

OPTIMIZERS: dict[str, Callable[[list[Any], SolverConfig, float], torch.optim.Optimizer]] = {
    "adam": lambda params, s, lr: torch.optim.Adam(params, lr=lr, weight_decay=s.weight_decay),
    "adamw": lambda params, s, lr: torch.optim.AdamW(params, lr=lr, weight_decay=s.weight_decay),
    "sgd": lambda params, s, lr: torch.optim.SGD(params, lr=lr, momentum=s.momentum, weight_decay=s.weight_decay),
}


def scaled_lr(solver: SolverConfig, global_batch_size: int) -> float:
    """``solver.lr`` scaled linearly from ``solver.reference_batch_size`` to the real global batch.

    ``lr * global_batch_size / reference_batch_size``; ``solver.lr`` unchanged when the reference is
    null or 0. The original CenterNet gives lr 1.25e-4 for a batch of 32 (set reference 32).
    """
    reference = solver.reference_batch_size
    if not reference:
        return solver.lr
    if reference < 0:
        raise ValueError(f"solver.reference_batch_size must be >= 0 or null, got {reference}")
    return solver.lr * global_batch_size / reference


def build_optimizer(
    params: Iterable[torch.nn.Parameter],
    solver: SolverConfig,
    *,
    lr: float | None = None,
    backbone_params: Iterable[torch.nn.Parameter] = (),
) -> torch.optim.Optimizer:
    """Create the optimizer named by ``solver.optimizer`` (adam | adamw | sgd) at ``lr`` (default ``solver.lr``).

    Args:
        params: every parameter to train (those with ``requires_grad=False`` are left out).
        solver: the ``solver`` config section.
        lr: the base learning rate (default ``solver.lr``).
        backbone_params: the subset of ``params`` trained at ``lr * solver.backbone_lr_mult``: with a
            multiplier other than 1 they form a second param group (the first one's lr is the logged one).
    """
    base_lr = solver.lr if lr is None else lr
    trainable = [p for p in params if p.requires_grad]
    if solver.backbone_lr_mult == 1.0:
        return OPTIMIZERS[solver.optimizer](trainable, solver, base_lr)
    backbone_ids = {id(p) for p in backbone_params}
    groups = [
        {"params": [p for p in trainable if id(p) not in backbone_ids]},
        {"params": [p for p in trainable if id(p) in backbone_ids], "lr": base_lr * solver.backbone_lr_mult},
    ]
    return OPTIMIZERS[solver.optimizer](groups, solver, base_lr)


def warmup_factor_at(iteration: int, *, warmup_iters: int, warmup_factor: float) -> float:
    """Linear ramp from ``warmup_factor`` to 1 over the first ``warmup_iters`` iterations (1 afterwards)."""
    if iteration >= warmup_iters:
        return 1.0
    return warmup_factor + (1.0 - warmup_factor) * iteration / warmup_iters


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
    return factor * warmup_factor_at(iteration, warmup_iters=warmup_iters, warmup_factor=warmup_factor)


def cosine_lr_factor(
    iteration: int, *, total_iters: int, min_factor: float, warmup_iters: int, warmup_factor: float
) -> float:
    """``min + (1 - min) * (1 + cos(pi * t / T)) / 2`` over all ``T = total_iters``, times the warmup ramp."""
    progress = min(iteration / max(total_iters, 1), 1.0)
    factor = min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor * warmup_factor_at(iteration, warmup_iters=warmup_iters, warmup_factor=warmup_factor)


def build_scheduler(optimizer: torch.optim.Optimizer, solver: SolverConfig, iters_per_epoch: int) -> LambdaLR:
    """Per-iteration scheduler of ``solver.schedule`` (call ``step()`` after every optimizer step).

    The settings are read once here: later edits of ``solver`` do not change the schedule.
    """
    warmup_iters, warmup_factor = solver.warmup_iters, solver.warmup_factor
    steps, gamma = tuple(solver.lr_steps), solver.lr_gamma
    total_iters, min_factor = iters_per_epoch * solver.epochs, solver.min_lr_factor
    schedules: dict[str, Callable[[int], float]] = {
        "step": lambda i: step_lr_factor(
            i, iters_per_epoch=iters_per_epoch, lr_steps=steps, gamma=gamma, warmup_iters=warmup_iters,
            warmup_factor=warmup_factor,
        ),
        "cosine": lambda i: cosine_lr_factor(
            i, total_iters=total_iters, min_factor=min_factor, warmup_iters=warmup_iters, warmup_factor=warmup_factor
        ),
    }
    return LambdaLR(optimizer, schedules[solver.schedule])


@dataclasses.dataclass(frozen=True)
class TrainingPlan:
    """How long a run trains and where its schedule turns, after ``solver.min_iters`` (docs/schedules.md).

    Attributes:
        epochs: epochs to train.
        iters_per_epoch: optimisation steps per epoch (batches of the train loader).
        total_iters: ``epochs * iters_per_epoch``.
        lr_steps: epochs at which the step schedule multiplies the lr by ``solver.lr_gamma``.
        warmup_iters: linear warmup length in iterations.
        eval_interval: epochs between evaluations (0 = only after the last epoch).
        stretch: ``epochs / solver.epochs`` (1.0 when ``solver.min_iters`` did not apply).
    """

    epochs: int
    iters_per_epoch: int
    total_iters: int
    lr_steps: tuple[int, ...]
    warmup_iters: int
    eval_interval: int
    stretch: float

    def apply(self, solver: SolverConfig) -> SolverConfig:
        """``solver`` with this plan's epochs, lr steps and warmup (for :func:`build_scheduler`)."""
        return dataclasses.replace(solver, epochs=self.epochs, lr_steps=list(self.lr_steps),
                                   warmup_iters=self.warmup_iters)

    def describe(self) -> str:
        """One line: the plan, and what ``solver.min_iters`` changed."""
        text = (f"{self.epochs} epochs x {self.iters_per_epoch} iterations = {self.total_iters} iterations, "
                f"lr steps at epochs {list(self.lr_steps)}, warmup {self.warmup_iters} iterations, "
                f"evaluation every {self.eval_interval or self.epochs} epochs")
        if self.stretch != 1.0:
            text += f" (stretched x{self.stretch:.4g} to reach solver.min_iters)"
        return text


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def plan_training(solver: SolverConfig, iters_per_epoch: int, eval_interval: int) -> TrainingPlan:
    """The training plan of ``solver`` for a loader of ``iters_per_epoch`` batches.

    When ``solver.epochs * iters_per_epoch`` is below ``solver.min_iters``, the epochs are raised to
    ``ceil(min_iters / iters_per_epoch)`` and the epoch-counted schedule is stretched by
    ``stretch = epochs / solver.epochs``: each lr step epoch and ``eval_interval`` are multiplied by it and
    rounded half up (an interval stays >= 1), so they keep their place as a fraction of training.
    ``warmup_iters`` is already counted in steps and stays as written: ``min_iters`` is meant to be the step
    count of the recipe on its own data, and there the warmup took that many steps too (stretching it by
    the epoch factor would turn the shapes recipe's 50 steps into 775 of 992 on 150 images). Otherwise
    the plan is the config as written.

    Raises:
        ValueError: ``solver.min_iters`` is negative, or the loader has no batch.
    """
    if solver.min_iters < 0:
        raise ValueError(f"solver.min_iters must be >= 0, got {solver.min_iters}")
    if iters_per_epoch < 1:
        raise ValueError(f"the train loader has no batch (iterations per epoch {iters_per_epoch})")
    epochs, stretch = solver.epochs, 1.0
    if solver.epochs * iters_per_epoch < solver.min_iters:
        if solver.epochs < 1:
            raise ValueError(f"solver.epochs must be >= 1 to stretch to solver.min_iters, got {solver.epochs}")
        epochs = math.ceil(solver.min_iters / iters_per_epoch)
        stretch = epochs / solver.epochs
    if stretch == 1.0:
        lr_steps, interval = tuple(solver.lr_steps), eval_interval
    else:
        lr_steps = tuple(_round_half_up(step * stretch) for step in solver.lr_steps)
        interval = max(1, _round_half_up(eval_interval * stretch)) if eval_interval > 0 else 0
    return TrainingPlan(epochs=epochs, iters_per_epoch=iters_per_epoch, total_iters=epochs * iters_per_epoch,
                        lr_steps=lr_steps, warmup_iters=solver.warmup_iters, eval_interval=interval, stretch=stretch)
