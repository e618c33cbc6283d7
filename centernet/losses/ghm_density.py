"""The gradient-density machinery shared by the GHM heatmap losses (``ghm_c``, ``ghm_centernet``).

See ``docs/loss_study.md`` for the definitions. Every valid element has a (detached) gradient norm
``g`` in [0, 1]; it falls into one of ``bins`` equal regions of [0, 1] (the last edge raised by
``1e-6`` so that ``g = 1`` is inside). With ``count[b]`` the number of valid elements in bin ``b``,
``N`` their total and ``n`` the number of non-empty bins, an element in bin ``b`` gets the weight::

    w[b] = N / (density[b] * n)        (0 for an empty bin)

Where ``density[b]`` comes from (``density=``):

- ``"batch"``: the current batch counts (``density = count``).
- ``"ema"`` (``0 < momentum < 1``): a running average per bin, updated only for bins that are
  non-empty in the batch: ``acc[b] = momentum * acc[b] + (1 - momentum) * count[b]``. Start
  (``ema_init=``): ``"first_count"`` (default) sets a bin's average to its first non-zero count, so
  the first call equals ``"batch"``; ``"zero"`` starts every average at 0, as the GHM paper's
  released code does, so the first weights are ``1 / (1 - momentum)`` times the batch weights.
- ``"epoch"``: the histogram accumulated over the whole previous epoch, rescaled to the batch total
  (``density = hist * N / sum(hist)``). During the first epoch, and for a bin that was empty in the
  previous epoch, the current batch count is used instead.
- ``"batch_then_epoch"``: ``"batch"`` until the switch, ``"epoch"`` after it. The switch happens at
  the end of epoch ``switch_epoch`` when it is > 0; with ``switch_epoch = 0`` it happens at the end
  of the first epoch ``e >= 2`` whose mean training loss improved by less than ``switch_tolerance``
  relative to epoch ``e - 1``: ``(L[e-1] - L[e]) / |L[e-1]| < switch_tolerance``. The epoch after
  which it switched is the buffer ``switched_at_epoch`` (0 = not yet).

The running statistics are registered buffers (in ``state_dict`` and checkpoints) and change only in
training mode (``module.train()``). ``reduce_counts`` (DDP) all-reduces the per-bin counts so that
the histogram, ``N`` and ``n`` are global. :meth:`GradientDensityLoss.end_epoch` is called by
:class:`centernet.engine.hooks.LossStatisticsHook` after every epoch with the epoch-mean loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

from centernet.config.schema import ghm_options_error
from centernet.losses.base import HeatmapLoss

DensitySource = Literal["batch", "ema", "epoch", "batch_then_epoch"]
EmaInit = Literal["first_count", "zero"]
LAST_EDGE_MARGIN = 1e-6  # the last bin edge is 1 + this so that g = 1 falls inside the last bin


class GradientDensityLoss(HeatmapLoss):
    """Base of the GHM heatmap losses: bins, density statistics and the per-element weights.

    Args:
        bins: number of equal gradient-norm bins on [0, 1] (>= 1).
        momentum: EMA momentum of the bin counts in [0, 1); > 0 only with ``density="ema"``.
        density: ``"batch" | "ema" | "epoch" | "batch_then_epoch"``; None picks ``"ema"`` when
            ``momentum > 0`` and ``"batch"`` otherwise.
        ema_init: ``"first_count" | "zero"``, the start of the running average (``"ema"`` only).
        switch_epoch: ``"batch_then_epoch"``: the last epoch with batch density (> 0), or 0 to
            switch automatically on ``switch_tolerance``.
        switch_tolerance: relative improvement of the epoch-mean training loss below which the
            automatic switch happens (>= 0).
        reduce_counts: optional ``Callable[[LongTensor[bins]], LongTensor[bins]]`` applied to the
            per-batch bin counts, e.g. an all-reduce sum under DDP. None = identity.

    Attributes:
        last_bin_counts: LongTensor[bins], the (reduced) bin counts of the latest call, for logging.
        ema_counts: FloatTensor[bins], the running average (``density="ema"``).
        epoch_counts: LongTensor[bins], the histogram accumulated during the current epoch.
        previous_epoch_counts: LongTensor[bins], the histogram of the previous epoch.
        switched_at_epoch: LongTensor[], ``batch_then_epoch``: the epoch after which the previous
            epoch's histogram is used (0 = not yet).
        epochs_ended: LongTensor[], number of :meth:`end_epoch` calls (epochs completed).
        last_epoch_loss: FloatTensor[], the epoch-mean loss passed to the latest :meth:`end_epoch`
            (NaN when none was given).
    """

    edges: Tensor
    last_bin_counts: Tensor
    ema_counts: Tensor
    epoch_counts: Tensor
    previous_epoch_counts: Tensor
    switched_at_epoch: Tensor
    epochs_ended: Tensor
    last_epoch_loss: Tensor

    def __init__(
        self,
        bins: int = 10,
        momentum: float = 0.0,
        density: DensitySource | None = None,
        ema_init: EmaInit = "first_count",
        switch_epoch: int = 0,
        switch_tolerance: float = 0.01,
        reduce_counts: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__()
        if density is None and isinstance(momentum, int | float):
            density = "ema" if momentum > 0 else "batch"
        problem = ghm_options_error(bins, momentum, density, ema_init, switch_epoch, switch_tolerance)
        if problem is not None:
            raise ValueError(f"{type(self).__name__}: {problem}")
        self.bins = bins
        self.momentum = float(momentum)
        self.density: DensitySource = density
        self.ema_init: EmaInit = ema_init
        self.switch_epoch = switch_epoch
        self.switch_tolerance = float(switch_tolerance)
        self.reduce_counts = reduce_counts
        edges = torch.linspace(0.0, 1.0, bins + 1)
        edges[-1] += LAST_EDGE_MARGIN
        self.register_buffer("edges", edges, persistent=False)
        self.register_buffer("last_bin_counts", torch.zeros(bins, dtype=torch.long), persistent=False)
        self.register_buffer("ema_counts", torch.zeros(bins, dtype=torch.float32))
        self.register_buffer("epoch_counts", torch.zeros(bins, dtype=torch.long))
        self.register_buffer("previous_epoch_counts", torch.zeros(bins, dtype=torch.long))
        if density == "batch_then_epoch":  # only here, so that other checkpoints keep their keys
            self.register_buffer("switched_at_epoch", torch.zeros((), dtype=torch.long))
            self.register_buffer("epochs_ended", torch.zeros((), dtype=torch.long))
            self.register_buffer("last_epoch_loss", torch.full((), math.nan, dtype=torch.float64))

    def element_weights(self, grad_norm: Tensor, valid: Tensor) -> Tensor:
        """Per-element weights ``w[bin(g)]`` (0 where not valid), updating the statistics in training.

        Args:
            grad_norm: FloatTensor[B, C, H, W] detached gradient norms in [0, 1].
            valid: BoolTensor[B, C, H, W], the elements that count.

        Returns:
            FloatTensor[B, C, H, W], no gradient.
        """
        if self.edges.device != grad_norm.device:
            self.to(grad_norm.device)
        with torch.no_grad():
            bin_index = torch.bucketize(grad_norm.contiguous(), self.edges[1:-1], right=True)  # [B, C, H, W]
            counts = torch.zeros(self.bins, dtype=torch.long, device=grad_norm.device)
            counts.scatter_add_(0, bin_index.flatten(), valid.flatten().long())  # [bins]
            if self.reduce_counts is not None:
                counts = self.reduce_counts(counts)
            self.last_bin_counts.copy_(counts)
            counts_f = counts.float()
            density = self._density(counts, counts_f)  # [bins] > 0 wherever counts > 0
            num_nonempty = (counts > 0).sum().float().clamp_min(1.0)
            bin_weight = counts_f.sum() / (density * num_nonempty)
            bin_weight = torch.where(counts > 0, bin_weight, torch.zeros_like(bin_weight))
            return bin_weight[bin_index] * valid

    def _density(self, counts: Tensor, counts_f: Tensor) -> Tensor:
        """Per-bin density for this call (FloatTensor[bins], > 0 wherever ``counts > 0``)."""
        if self.density == "batch":
            return counts_f
        if self.density == "ema":
            acc = self.ema_counts
            if self.training:
                blended = self.momentum * acc + (1.0 - self.momentum) * counts_f
                if self.ema_init == "first_count":
                    blended = torch.where(acc > 0, blended, counts_f)  # a bin starts at its first count
                acc.copy_(torch.where(counts > 0, blended, acc))
            return torch.where(acc > 0, acc, counts_f)
        if self.training:
            self.epoch_counts.add_(counts.to(self.epoch_counts.dtype))
        previous = self.previous_epoch_counts.float()
        scaled = previous * (counts_f.sum() / previous.sum().clamp_min(1.0))  # rescaled to this batch
        epoch_density = torch.where(scaled > 0, scaled, counts_f)
        if self.density == "batch_then_epoch":  # selected on the device: no host sync per step
            return torch.where(self.switched_at_epoch > 0, epoch_density, counts_f)
        return epoch_density

    @property
    def has_switched(self) -> bool:
        """``batch_then_epoch``: the previous epoch's histogram is in use (one host read)."""
        return self.density == "batch_then_epoch" and int(self.switched_at_epoch) > 0

    def start_epoch(self) -> None:
        """Begin a new epoch's histogram (discards a partial accumulation). Optional to call."""
        self.epoch_counts.zero_()

    def histogram(self) -> tuple[list[float], list[int]]:
        """Bin edges and the (reduced) element counts of the latest training batch, for logging."""
        return [float(e) for e in self.edges.tolist()], [int(c) for c in self.last_bin_counts.tolist()]

    def record_fields(self) -> dict[str, Any]:
        """``{"ghm_switch_epoch": e}`` once ``batch_then_epoch`` has switched after epoch ``e``, else ``{}``."""
        return {"ghm_switch_epoch": int(self.switched_at_epoch)} if self.has_switched else {}

    def end_epoch(self, epoch_loss: float | None = None) -> None:
        """Close an epoch: its histogram becomes the next epoch's density; maybe switch density.

        Args:
            epoch_loss: the epoch-mean training loss (for the automatic ``batch_then_epoch`` switch;
                None never triggers it).
        """
        self.previous_epoch_counts.copy_(self.epoch_counts)
        self.epoch_counts.zero_()
        if self.density != "batch_then_epoch":
            return
        self.epochs_ended += 1
        ended = int(self.epochs_ended)
        previous = float(self.last_epoch_loss)
        current = math.nan if epoch_loss is None else float(epoch_loss)
        self.last_epoch_loss.fill_(current)
        if self.has_switched:
            return
        if self.switch_epoch > 0:
            switch = ended >= self.switch_epoch
        else:  # NaN on either side (no loss given, first epoch) compares False: no switch
            switch = bool((previous - current) < self.switch_tolerance * abs(previous))
        if switch:
            self.switched_at_epoch.fill_(ended)

    def extra_repr(self) -> str:
        text = f"bins={self.bins}, momentum={self.momentum}, density={self.density!r}"
        if self.density == "ema":
            text += f", ema_init={self.ema_init!r}"
        if self.density == "batch_then_epoch":
            text += f", switch_epoch={self.switch_epoch}, switch_tolerance={self.switch_tolerance}"
        return text
