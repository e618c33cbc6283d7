"""The contract every heatmap loss follows (see ``docs/architecture.md``, "Adding a heatmap loss").

A heatmap loss is an ``nn.Module`` called as ``loss(logits, target, mask=None, normaliser=None)``:

- ``logits`` / ``target`` ``[B, C, H, W]``, ``mask`` ``[B, C, H, W]`` or ``[B, 1, H, W]`` (0 = ignored);
- the loss sums its per-element terms and divides the sum by ``normaliser``, a float32 scalar the
  criterion computes once per batch with :meth:`HeatmapLoss.normaliser` and, under DDP, all-reduces
  (DETR's ``num_boxes``, mmdetection's ``avg_factor``); ``None`` = this batch's own count.

Subclasses say what they divide by by overriding :meth:`HeatmapLoss.normaliser`. Losses that keep
statistics across batches (GHM-C's histograms) implement :class:`EpochStatistics` so that the engine's
:class:`centernet.engine.hooks.LossStatisticsHook` can log them and close each epoch.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from centernet.losses.masking import expand_mask

POSITIVE_TARGET = 1.0  # heatmap value marking an object centre (the Gaussian peak)


def count_positives(target: Tensor, mask: Tensor | None) -> Tensor:
    """Masked elements with ``target == 1`` (the focal losses' normaliser), float32 scalar."""
    return ((target == POSITIVE_TARGET).float() * expand_mask(mask, target)).sum()


def count_valid(target: Tensor, mask: Tensor | None) -> Tensor:
    """Masked-in elements (the GHM-C / BCE normaliser), float32 scalar."""
    return (expand_mask(mask, target) > 0).float().sum()


class HeatmapLoss(nn.Module):
    """Base class of the heatmap losses: by default normalised by the number of masked positives."""

    def normaliser(self, target: Tensor, mask: Tensor | None) -> Tensor:
        """What this loss divides its sum by for one batch (before any all-reduce), float32 scalar.

        Args:
            target: FloatTensor[B, C, H, W] heatmap targets.
            mask: optional Tensor[B, C, H, W] or [B, 1, H, W]; 0 = ignored.
        """
        return count_positives(target, mask)


@runtime_checkable
class EpochStatistics(Protocol):
    """A loss with statistics to log (a histogram) and state that changes at epoch ends."""

    def histogram(self) -> tuple[list[float], list[int]] | None:
        """Bin edges and counts of the last training batch, or None before the first one."""
        ...

    def record_fields(self) -> dict[str, Any]:
        """More fields for the training records of ``metrics.jsonl`` (e.g. ``ghm_switch_epoch``)."""
        ...

    def end_epoch(self, epoch_loss: float | None = None) -> None:
        """Close the current epoch (e.g. make its histogram the next epoch's density).

        Args:
            epoch_loss: the epoch-mean training loss (all ranks), or None when unknown.
        """
        ...
