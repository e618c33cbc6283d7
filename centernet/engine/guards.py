"""Non-finite checks of the training loop: they stop the run with one line naming the step, the bad values
and the last good checkpoint, or let it skip a limited number of bad steps."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import torch
from torch import nn

logger = logging.getLogger(__name__)


def check_finite_losses(record: Mapping[str, float], *, epoch: int, iteration: int, last_checkpoint: str) -> None:
    """Raise FloatingPointError when a logged loss term is NaN or infinite.

    Args:
        record: loss-term name -> value (window means at a log interval).
        epoch: 1-based epoch, for the message.
        iteration: global iteration, for the message.
        last_checkpoint: the newest checkpoint on disk (or ``none``), for the message.
    """
    bad = {name: value for name, value in record.items() if not math.isfinite(value)}
    if bad:
        raise FloatingPointError(
            f"non-finite loss at epoch {epoch}, iteration {iteration}: {bad}; last good checkpoint: {last_checkpoint}"
        )


def check_finite_weights(model: nn.Module, *, epoch: int, iteration: int, last_checkpoint: str) -> None:
    """Raise FloatingPointError (before a save or an evaluation) when a parameter or a floating-point buffer
    (e.g. BatchNorm's running statistics) of ``model`` holds NaN or infinity."""
    tensors = [*model.named_parameters(), *((name, b) for name, b in model.named_buffers() if b.is_floating_point())]
    bad = [name for name, tensor in tensors if not bool(torch.isfinite(tensor).all())]
    if bad:
        raise FloatingPointError(
            f"non-finite weights at epoch {epoch}, iteration {iteration} ({bad[0]} and {len(bad) - 1} more); "
            f"not saved; last good checkpoint: {last_checkpoint}"
        )


def allow_skipped_step(
    losses: Mapping[str, torch.Tensor], *, skipped: int, allowed: int, epoch: int, iteration: int, last_checkpoint: str
) -> None:
    """Warn about the ``skipped``-th skipped non-finite step, or raise once more than ``allowed`` were skipped.

    Args:
        losses: the step's loss terms (named in the messages).
        skipped: skipped steps so far, this one included.
        allowed: ``solver.skip_nonfinite_steps``.
        epoch: 1-based epoch of the step.
        iteration: 1-based global iteration of the step.
        last_checkpoint: the newest checkpoint on disk (or ``none``).
    """
    terms = {name: float(value.detach()) for name, value in losses.items()}
    where = "" if not all(math.isfinite(v) for v in terms.values()) else " on another rank (this rank's terms)"
    if skipped > allowed:
        raise FloatingPointError(
            f"non-finite loss{where} at epoch {epoch}, iteration {iteration}: {terms}; {skipped - 1} step(s) already "
            f"skipped (solver.skip_nonfinite_steps={allowed}); last good checkpoint: {last_checkpoint}"
        )
    logger.warning(
        "skipped step %d with a non-finite loss%s %s (%d/%d skips allowed)", iteration, where, terms, skipped, allowed
    )
