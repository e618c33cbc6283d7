"""The CenterNet training criterion: weighted heatmap, size and offset loss terms."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from centernet.losses.bce import BCEHeatmapLoss
from centernet.losses.focal import POSITIVE_TARGET, PenaltyReducedFocalLoss, SigmoidFocalLoss
from centernet.losses.ghm import GHMC
from centernet.losses.masking import expand_mask, safe_denominator
from centernet.losses.regression import NORMALISER_EPS, reg_l1_loss

OUTPUT_KEYS = ("heatmap", "size", "offset")
TARGET_KEYS = ("heatmap", "size", "offset", "index", "mask")
OPTIONAL_TARGET_KEYS = ("heatmap_mask",)


def _count_positives(target: Tensor, mask: Tensor | None) -> Tensor:
    """Masked elements with ``target == 1`` (the focal losses' normaliser), float32 scalar."""
    return ((target == POSITIVE_TARGET).float() * expand_mask(mask, target)).sum()


def _count_valid(target: Tensor, mask: Tensor | None) -> Tensor:
    """Masked-in elements (the GHM-C / BCE normaliser), float32 scalar."""
    return (expand_mask(mask, target) > 0).float().sum()


# What each heatmap loss divides its sum by, so that DDP can use the global count instead.
HEATMAP_NORMALISERS: dict[type[nn.Module], Callable[[Tensor, Tensor | None], Tensor]] = {
    PenaltyReducedFocalLoss: _count_positives,
    SigmoidFocalLoss: _count_positives,
    GHMC: _count_valid,
    BCEHeatmapLoss: _count_valid,
}


def _require(mapping: Mapping[str, Tensor], keys: Sequence[str], what: str) -> None:
    """Raise KeyError naming the missing keys of ``mapping``."""
    missing = [key for key in keys if key not in mapping]
    if missing:
        raise KeyError(f"CenterNetCriterion: {what} lacks key(s) {missing}; expected {list(keys)}")


class CenterNetCriterion(nn.Module):
    """Weighted CenterNet loss terms ``{"heatmap", "size", "offset"}``, ready to be summed.

    The terms are ``heatmap_weight * L_hm``, ``size_weight * L_size`` and ``offset_weight * L_off``.

    The heatmap term is any registered heatmap loss (see
    :func:`centernet.losses.build_heatmap_loss`) applied with ``targets["heatmap_mask"]``; size and
    offset are :func:`centernet.losses.reg_l1_loss` at the object centres. All terms are float32,
    whatever the output dtype (AMP).

    Args:
        heatmap_loss: module called as ``heatmap_loss(logits, target, mask) -> FloatTensor[]``.
        heatmap_weight: weight of the heatmap term.
        size_weight: weight of the size term (0.1 in CenterNet).
        offset_weight: weight of the offset term.

    Attributes:
        all_reduce_sum: under DDP, a function summing a tensor over the ranks (``None``: one process).
            The terms are then normalised by the global number of positives (heatmap; valid elements
            for GHM-C / BCE) and of object coordinates (size / offset) instead of this rank's: each
            rank's term is rescaled by ``local_count * world_size / global_count``, so that the
            gradient DDP averages over ranks equals the single-process gradient of the global batch.
        world_size: number of ranks (with ``all_reduce_sum``).
    """

    def __init__(
        self,
        heatmap_loss: nn.Module,
        *,
        heatmap_weight: float = 1.0,
        size_weight: float = 0.1,
        offset_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.heatmap_loss = heatmap_loss
        self.heatmap_weight = float(heatmap_weight)
        self.size_weight = float(size_weight)
        self.offset_weight = float(offset_weight)
        self.all_reduce_sum: Callable[[Tensor], Tensor] | None = None
        self.world_size = 1

    def forward(
        self,
        outputs: Mapping[str, Tensor] | Sequence[Mapping[str, Tensor]],
        targets: Mapping[str, Tensor],
    ) -> dict[str, Tensor]:
        """Compute the weighted loss terms.

        Args:
            outputs: the model output ``{"heatmap": [B, C, H, W] logits, "size": [B, 2, H, W],
                "offset": [B, 2, H, W]}``, or a list of such dicts (one per hourglass stack: every
                term is averaged over the stacks).
            targets: from ``render_targets``: ``heatmap [B, C, H, W]``, ``size [B, M, 2]`` (w, h),
                ``offset [B, M, 2]``, ``index [B, M]`` long, ``mask [B, M]`` and optionally
                ``heatmap_mask [B, 1, H, W]`` (0 = ignored).

        Returns:
            ``{"heatmap": FloatTensor[], "size": FloatTensor[], "offset": FloatTensor[]}``, weighted,
            float32; the total loss is their sum.

        Raises:
            KeyError: naming a missing output or target key.
            ValueError: for an empty list of outputs or a heatmap shape mismatch.
        """
        stacks = [outputs] if isinstance(outputs, Mapping) else list(outputs)
        if not stacks:
            raise ValueError("CenterNetCriterion: outputs is an empty list; expected at least one stack")
        _require(targets, TARGET_KEYS, "targets")
        heatmap_mask = targets.get(OPTIONAL_TARGET_KEYS[0])
        sums: dict[str, Tensor] = {}
        for stack_index, stack in enumerate(stacks):
            _require(stack, OUTPUT_KEYS, f"outputs[{stack_index}]")
            if stack["heatmap"].shape != targets["heatmap"].shape:
                raise ValueError(
                    f"CenterNetCriterion: outputs[{stack_index}]['heatmap'] shape "
                    f"{tuple(stack['heatmap'].shape)} != targets['heatmap'] shape "
                    f"{tuple(targets['heatmap'].shape)}"
                )
            terms = {
                "heatmap": self.heatmap_loss(stack["heatmap"].float(), targets["heatmap"], heatmap_mask),
                "size": reg_l1_loss(stack["size"], targets["size"], targets["index"], targets["mask"]),
                "offset": reg_l1_loss(stack["offset"], targets["offset"], targets["index"], targets["mask"]),
            }
            for key, value in terms.items():
                sums[key] = sums[key] + value.float() if key in sums else value.float()
        weights = {"heatmap": self.heatmap_weight, "size": self.size_weight, "offset": self.offset_weight}
        num_stacks = len(stacks)
        scales = self._global_normaliser_scales(targets)
        return {key: sums[key] * (weights[key] / num_stacks) * scales.get(key, 1.0) for key in OUTPUT_KEYS}

    def normaliser_counts(self, targets: Mapping[str, Tensor]) -> Tensor:
        """What this batch's terms are divided by: ``[heatmap count, object coordinates]``.

        The heatmap count is the number of masked positives (focal losses) or of masked-in elements
        (GHM-C, BCE); the regression count is ``D * num_objects`` (``D = 2``).

        Returns:
            FloatTensor[2] (no gradient).
        """
        count_heatmap = HEATMAP_NORMALISERS.get(type(self.heatmap_loss), _count_positives)
        regression_dims = targets["size"].shape[-1]  # D coordinates per object
        return torch.stack(
            [
                count_heatmap(targets["heatmap"], targets.get(OPTIONAL_TARGET_KEYS[0])).float(),
                targets["mask"].float().sum() * regression_dims,
            ]
        ).detach()

    def _global_normaliser_scales(self, targets: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Per-term factors ``local * world_size / global`` of the normalisers (empty without DDP)."""
        if self.all_reduce_sum is None or self.world_size <= 1:
            return {}
        local = self.normaliser_counts(targets)  # [2]
        total = self.all_reduce_sum(local)
        heatmap_scale = safe_denominator(local[0]) * self.world_size / safe_denominator(total[0])
        regression_scale = (local[1] + NORMALISER_EPS) * self.world_size / (total[1] + NORMALISER_EPS)
        return {"heatmap": heatmap_scale, "size": regression_scale, "offset": regression_scale}

    def extra_repr(self) -> str:
        return (
            f"heatmap_weight={self.heatmap_weight}, size_weight={self.size_weight}, offset_weight={self.offset_weight}"
        )
