"""Inference speed-ups for a trained detector: BatchNorm folding, channels_last, torch.compile, bf16.

Named steps (:data:`OPTIMIZATIONS`), given to :class:`~centernet.inference.predictor.Detector` as
``optimize="fold_bn,channels_last"`` or a list:

- ``fold_bn``: fold every BatchNorm into the convolution feeding it
  (:func:`centernet.models.fold_bn.fold_batch_norm_`); same outputs to float rounding.
- ``channels_last``: NHWC memory format for the model and its input (what the CPU's oneDNN and
  the GPU's tensor-core convolutions prefer); same outputs.
- ``compile``: ``torch.compile`` the model (the first call of each input shape compiles: seconds to
  a minute); same outputs to float rounding.
- ``bf16``: autocast to bfloat16; on a CPU only where it is native (AVX512-BF16 / AMX, see
  :func:`centernet.utils.env.cpu_has_fast_bf16`), elsewhere skipped with a warning. Changes the
  outputs slightly (the accuracy cost is measured, not assumed).

``fast`` stands for ``fold_bn,channels_last``: the exact steps that help on every device.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from centernet.models.fold_bn import fold_batch_norm_
from centernet.utils.env import cpu_has_fast_bf16

logger = logging.getLogger(__name__)

OPTIMIZATIONS = ("fold_bn", "channels_last", "compile", "bf16")
FAST = ("fold_bn", "channels_last")


@dataclass(frozen=True)
class InferencePlan:
    """What the detector applies.

    Attributes:
        steps: the optimisation steps, in :data:`OPTIMIZATIONS` order.
        channels_last: whether the model and its input use NHWC.
        amp: the autocast precision to use (``bf16`` when that step applies, else the caller's).
    """

    steps: tuple[str, ...]
    channels_last: bool
    amp: str


def parse_optimizations(optimize: str | Sequence[str] | None) -> tuple[str, ...]:
    """Normalise ``"fast,compile"`` / ``["fold_bn"]`` / None into steps in :data:`OPTIMIZATIONS` order.

    Raises:
        ValueError: naming an unknown step and the valid ones.
    """
    if optimize is None:
        return ()
    names = optimize.split(",") if isinstance(optimize, str) else list(optimize)
    wanted: set[str] = set()
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        if name == "fast":
            wanted.update(FAST)
        elif name in OPTIMIZATIONS:
            wanted.add(name)
        else:
            raise ValueError(f"unknown inference optimisation {name!r}; valid: {['fast', *OPTIMIZATIONS]}")
    return tuple(step for step in OPTIMIZATIONS if step in wanted)


def plan_optimizations(
    optimize: str | Sequence[str] | None, *, device: torch.device, amp: str, channels_last: bool
) -> InferencePlan:
    """The steps that apply on ``device`` (``bf16`` dropped, with a warning, on a CPU without native bf16)."""
    steps = parse_optimizations(optimize)
    if "bf16" in steps:
        if device.type == "cpu" and not cpu_has_fast_bf16():
            logger.warning("optimize=bf16 skipped: this CPU has no native bfloat16 (it would run slower)")
            steps = tuple(step for step in steps if step != "bf16")
        else:
            amp = "bf16"
    return InferencePlan(steps=steps, channels_last=channels_last or "channels_last" in steps, amp=amp)


def optimize_model(model: nn.Module, plan: InferencePlan, example: torch.Tensor) -> nn.Module:
    """Apply ``plan`` to an eval-mode ``model`` already on ``example``'s device.

    Args:
        model: the detector in eval mode.
        plan: from :func:`plan_optimizations`.
        example: an input of the size the detector will see (``[1, 3, H, W]``), to find the
            BatchNorm pairs.

    Returns:
        The model to call (a compiled wrapper with ``compile``; the same module otherwise).
    """
    if "fold_bn" in plan.steps:
        folded = fold_batch_norm_(model, example)
        logger.info("folded %d BatchNorm layers into their convolutions", folded)
    if plan.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if "compile" in plan.steps:
        compiled: nn.Module = torch.compile(model)  # type: ignore[assignment]
        return compiled
    return model
