"""GHM-C: the gradient harmonizing classification loss (Li, Liu, Wang, AAAI 2019) on heatmap logits.

Every element's gradient norm ``g = |sigmoid(x) - y|`` (detached) falls into one of ``bins`` equal
regions of [0, 1] (the last edge raised by ``1e-6`` so that ``g = 1`` is inside). With ``count[b]``
the number of valid (mask 1) elements in bin ``b``, ``N`` their total and ``n`` the number of
non-empty bins, an element in bin ``b`` gets the weight ``N / (density[b] * n)`` and::

    L = sum(weight * BCE_with_logits(x, y)) / N_valid

so that ``d L / d x = (p - y) * weight / N_valid``. Soft (Gaussian) targets ``y`` are allowed.

Where ``density[b]`` comes from (``density=``):

- ``"batch"``: the current batch counts (``density = count``; the paper with momentum 0).
- ``"ema"`` (``0 < momentum < 1``): a running average kept per bin, updated only for bins that are
  non-empty in the batch, as in the paper's code: ``acc[b] = momentum * acc[b] + (1 - momentum) *
  count[b]``. Initialisation: a bin's average starts at its first non-zero count (``acc[b] =
  count[b]``), so the first call equals ``"batch"``. (The paper's code starts from ``acc = 0``,
  which makes the first weights ``1 / (1 - momentum)`` times too large.)
- ``"epoch"``: the histogram accumulated over the whole previous epoch, rescaled to the batch size
  (``weight = sum(hist) / (hist[b] * n)``). During the first epoch, and for any bin that was empty
  in the previous epoch, the current batch count is used instead. The trainer calls
  :meth:`GHMC.end_epoch` at the end of each epoch (and optionally :meth:`GHMC.start_epoch`).

The running statistics (``ema_counts``, ``epoch_counts``, ``previous_epoch_counts``) are registered
buffers (they land in ``state_dict`` and checkpoints) and are updated only in training mode
(``module.train()``), like BatchNorm statistics. Under DDP, ``reduce_counts`` is a function that
all-reduces (sums) the per-bin counts across ranks: the histogram, ``N`` and ``n`` are then global; the
criterion passes the all-reduced number of valid elements as the normaliser.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from centernet.losses.base import HeatmapLoss, count_valid
from centernet.losses.masking import check_heatmap_inputs, expand_mask, safe_denominator

DensitySource = Literal["batch", "ema", "epoch"]
DENSITY_SOURCES: tuple[str, ...] = ("batch", "ema", "epoch")
LAST_EDGE_MARGIN = 1e-6  # the last bin edge is 1 + this so that g = 1 falls inside the last bin


class GHMC(HeatmapLoss):
    """Gradient harmonizing classification loss on heatmap logits (registry name ``ghm_c``).

    Args:
        bins: number of equal gradient-norm bins on [0, 1] (>= 1).
        momentum: EMA momentum of the bin counts in [0, 1); > 0 only with ``density="ema"``.
        density: ``"batch" | "ema" | "epoch"`` (see the module docstring); None picks ``"ema"``
            when ``momentum > 0`` and ``"batch"`` otherwise.
        reduce_counts: optional ``Callable[[LongTensor[bins]], LongTensor[bins]]`` applied to the
            per-batch bin counts before use, e.g. an all-reduce sum under DDP. None = identity.

    Attributes:
        last_bin_counts: LongTensor[bins], the (reduced) bin counts of the latest call, for logging.
        ema_counts: FloatTensor[bins], the running average (``density="ema"``).
        epoch_counts: LongTensor[bins], the histogram accumulated during the current epoch.
        previous_epoch_counts: LongTensor[bins], the histogram of the previous epoch.
    """

    edges: Tensor
    last_bin_counts: Tensor
    ema_counts: Tensor
    epoch_counts: Tensor
    previous_epoch_counts: Tensor

    def __init__(
        self,
        bins: int = 10,
        momentum: float = 0.0,
        density: DensitySource | None = None,
        reduce_counts: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
            raise ValueError(f"GHMC: bins must be an integer >= 1, got {bins!r}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"GHMC: momentum must be in [0, 1), got {momentum!r}")
        if density is None:
            density = "ema" if momentum > 0 else "batch"
        if density not in DENSITY_SOURCES:
            raise ValueError(f"GHMC: density must be one of {list(DENSITY_SOURCES)}, got {density!r}")
        if (density == "ema") != (momentum > 0):
            raise ValueError(
                f"GHMC: density='ema' needs 0 < momentum < 1 and momentum > 0 needs density='ema'; "
                f"got density={density!r}, momentum={momentum!r}"
            )
        self.bins = bins
        self.momentum = float(momentum)
        self.density = density
        self.reduce_counts = reduce_counts
        edges = torch.linspace(0.0, 1.0, bins + 1)
        edges[-1] += LAST_EDGE_MARGIN
        self.register_buffer("edges", edges, persistent=False)
        self.register_buffer("last_bin_counts", torch.zeros(bins, dtype=torch.long), persistent=False)
        self.register_buffer("ema_counts", torch.zeros(bins, dtype=torch.float32))
        self.register_buffer("epoch_counts", torch.zeros(bins, dtype=torch.long))
        self.register_buffer("previous_epoch_counts", torch.zeros(bins, dtype=torch.long))

    def normaliser(self, target: Tensor, mask: Tensor | None) -> Tensor:
        """The number of masked-in elements."""
        return count_valid(target, mask)

    def forward(
        self, logits: Tensor, target: Tensor, mask: Tensor | None = None, normaliser: Tensor | None = None
    ) -> Tensor:
        """Compute the GHM-C loss.

        Args:
            logits: FloatTensor[B, C, H, W] raw heatmap scores (computed in float32).
            target: FloatTensor[B, C, H, W] targets in [0, 1] (binary or soft Gaussian).
            mask: optional Tensor[B, C, H, W] or [B, 1, H, W]; non-zero = counts (in the histogram
                and the loss), 0 = ignored.
            normaliser: FloatTensor[] to divide by instead of the number of valid elements.

        Returns:
            FloatTensor[] (float32 scalar); 0 when no element is valid.
        """
        check_heatmap_inputs(logits, target, mask, loss="GHMC")
        x = logits.float()
        y = target.float()
        if self.edges.device != x.device:
            self.to(x.device)
        valid = expand_mask(mask, x) > 0  # [B, C, H, W] bool
        with torch.no_grad():
            grad_norm = (torch.sigmoid(x) - y).abs().contiguous()  # bucketize wants contiguous input
            bin_index = torch.bucketize(grad_norm, self.edges[1:-1], right=True)  # [B, C, H, W]
            counts = torch.zeros(self.bins, dtype=torch.long, device=x.device)
            counts.scatter_add_(0, bin_index.flatten(), valid.flatten().long())  # [bins]
            if self.reduce_counts is not None:
                counts = self.reduce_counts(counts)
            self.last_bin_counts.copy_(counts)
            counts_f = counts.float()
            density = self._density(counts, counts_f)  # [bins] > 0 wherever counts > 0
            num_nonempty = (counts > 0).sum().float().clamp_min(1.0)
            bin_weight = counts_f.sum() / (density * num_nonempty)
            bin_weight = torch.where(counts > 0, bin_weight, torch.zeros_like(bin_weight))
            weight = bin_weight[bin_index] * valid  # [B, C, H, W]
        bce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
        count = valid.sum().float() if normaliser is None else normaliser
        return (weight * bce).sum() / safe_denominator(count)

    def _density(self, counts: Tensor, counts_f: Tensor) -> Tensor:
        """Per-bin density for this call, updating the running statistics in training mode.

        Args:
            counts: LongTensor[bins] (reduced) batch counts.
            counts_f: the same as float32.

        Returns:
            FloatTensor[bins], positive wherever ``counts > 0``.
        """
        if self.density == "batch":
            return counts_f
        if self.density == "ema":
            acc = self.ema_counts
            if self.training:
                blended = self.momentum * acc + (1.0 - self.momentum) * counts_f
                averaged = torch.where(acc > 0, blended, counts_f)  # a bin starts at its first count
                acc.copy_(torch.where(counts > 0, averaged, acc))
            return torch.where(acc > 0, acc, counts_f)
        if self.training:
            self.epoch_counts.add_(counts.to(self.epoch_counts.dtype))
        previous = self.previous_epoch_counts.float()
        scaled = previous * (counts_f.sum() / previous.sum().clamp_min(1.0))  # rescaled to this batch
        return torch.where(scaled > 0, scaled, counts_f)

    def start_epoch(self) -> None:
        """Begin a new epoch's histogram (discards a partial accumulation). Optional to call."""
        self.epoch_counts.zero_()

    def histogram(self) -> tuple[list[float], list[int]]:
        """Bin edges and the (reduced) element counts of the latest training batch, for logging."""
        return [float(e) for e in self.edges.tolist()], [int(c) for c in self.last_bin_counts.tolist()]

    def end_epoch(self) -> None:
        """Make the histogram accumulated during this epoch the density source of the next one."""
        self.previous_epoch_counts.copy_(self.epoch_counts)
        self.epoch_counts.zero_()

    def extra_repr(self) -> str:
        return f"bins={self.bins}, momentum={self.momentum}, density={self.density!r}"
