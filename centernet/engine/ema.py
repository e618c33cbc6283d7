"""Exponential moving average of the model weights (``solver.ema``).

After every optimizer step ``ema = d * ema + (1 - d) * weights`` for floating-point parameters and
buffers (integer buffers such as BatchNorm's ``num_batches_tracked`` are copied). The decay warms
up as ``d = decay * (1 - exp(-updates / warmup_iters))``, so early averages are not dominated by
the random initialisation (the ramp used by common detection code bases).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


class ModelEMA:
    """An averaged copy of a model, updated after each optimizer step.

    Args:
        model: the trained model (unwrapped from DDP); the EMA starts as a copy of its weights.
        decay: the decay once warmed up (e.g. 0.9998).
        warmup_iters: time constant of the decay ramp in updates (<= 0: no ramp).

    Attributes:
        module: the averaged model (eval mode, no gradients), used for evaluation and saved as
            ``ema`` in checkpoints.
        updates: number of updates so far.
    """

    def __init__(self, model: nn.Module, *, decay: float, warmup_iters: int) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"solver.ema_decay must be in [0, 1), got {decay}")
        self.module = copy.deepcopy(model).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)
        self.decay = float(decay)
        self.warmup_iters = int(warmup_iters)
        self.updates = 0

    def current_decay(self) -> float:
        """The decay used by the next update."""
        if self.warmup_iters <= 0:
            return self.decay
        return self.decay * (1.0 - math.exp(-(self.updates + 1) / self.warmup_iters))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend ``model``'s current weights into the average (call after ``optimizer.step()``)."""
        decay = self.current_decay()
        source = model.state_dict()
        for name, averaged in self.module.state_dict().items():
            value = source[name].detach()
            if averaged.dtype.is_floating_point:
                averaged.lerp_(value.to(averaged.dtype), 1.0 - decay)
            else:
                averaged.copy_(value)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """``{"model": averaged weights, "updates": int}`` (for checkpoints)."""
        return {"model": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` output."""
        self.module.load_state_dict(state["model"])
        self.updates = int(state["updates"])
