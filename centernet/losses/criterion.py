"""The CenterNet training criterion: a weighted heatmap term plus the box-regression terms."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from centernet.losses.base import HeatmapLoss
from centernet.losses.box_terms import BoxTerms, CentreL1Terms
from centernet.losses.masking import safe_denominator
from centernet.losses.regression import NORMALISER_EPS

OPTIONAL_TARGET_KEYS = ("heatmap_mask",)


def _check_heatmap_shape(output: Tensor, target: Tensor, stack_index: int) -> None:
    if output.shape != target.shape:
        raise ValueError(
            f"CenterNetCriterion: outputs[{stack_index}]['heatmap'] shape {tuple(output.shape)} != "
            f"targets['heatmap'] shape {tuple(target.shape)}"
        )


def _require(mapping: Mapping[str, Tensor], keys: Sequence[str], what: str) -> None:
    """Raise KeyError naming the missing keys of ``mapping``."""
    missing = [key for key in keys if key not in mapping]
    if missing:
        raise KeyError(f"CenterNetCriterion: {what} lacks key(s) {missing}; expected {list(keys)}")


class CenterNetCriterion(nn.Module):
    """Weighted loss terms ``{"heatmap", "size", "offset"}`` (CenterNet) or ``{"heatmap", "box"}`` (TTFNet).

    The terms are ``heatmap_weight * L_hm`` plus the weighted terms of ``box_terms``
    (:mod:`centernet.losses.box_terms`): ``size_weight * L_size`` and ``offset_weight * L_off`` by default,
    or ``weight * L_GIoU`` of the ``ltrb`` maps.

    The heatmap term is any registered heatmap loss (see
    :func:`centernet.losses.build_heatmap_loss`) applied with ``targets["heatmap_mask"]``; size and
    offset are :func:`centernet.losses.reg_l1_loss` at the object centres. All terms are float32,
    whatever the output dtype (AMP).

    Normalisers (as DETR's ``SetCriterion`` does with ``num_boxes``): once per batch the criterion
    computes what each term divides by — the heatmap loss's own count (:meth:`HeatmapLoss.normaliser`:
    masked positives for the focal losses, valid elements for GHM-C / BCE) and the box terms' count (the
    number of object coordinates, or the sum of the GIoU box weights) — all-reduces both in one call
    under DDP and hands them to the losses. With
    ``all_reduce_sum`` each rank divides by ``global_count / world_size``, so that the gradient DDP
    averages over the ranks equals the single-process gradient of the global batch.

    Args:
        heatmap_loss: a :class:`HeatmapLoss`, called as ``loss(logits, target, mask, normaliser)``.
        heatmap_weight: weight of the heatmap term.
        size_weight: weight of the size term (0.1 in CenterNet).
        offset_weight: weight of the offset term.
        box_terms: the box-regression strategy (default: :class:`CentreL1Terms` with ``size_weight`` and
            ``offset_weight``; both are unused when ``box_terms`` is given).
        all_reduce_sum: under DDP, a function summing a tensor over the ranks (``None``: one process).
        world_size: number of ranks (with ``all_reduce_sum``).
    """

    def __init__(
        self,
        heatmap_loss: HeatmapLoss,
        *,
        heatmap_weight: float = 1.0,
        size_weight: float = 0.1,
        offset_weight: float = 1.0,
        box_terms: BoxTerms | None = None,
        all_reduce_sum: Callable[[Tensor], Tensor] | None = None,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        self.heatmap_loss = heatmap_loss
        self.heatmap_weight = float(heatmap_weight)
        self.box_terms: BoxTerms = box_terms or CentreL1Terms(size_weight=size_weight, offset_weight=offset_weight)
        self.weights = {"heatmap": self.heatmap_weight, **self.box_terms.weights}
        self.all_reduce_sum = all_reduce_sum
        self.world_size = int(world_size)

    def forward(
        self,
        outputs: Mapping[str, Tensor] | Sequence[Mapping[str, Tensor]],
        targets: Mapping[str, Tensor],
    ) -> dict[str, Tensor]:
        """Compute the weighted loss terms.

        Args:
            outputs: the model output ``{"heatmap": [B, C, H, W] logits, "size": [B, 2, H, W],
                "offset": [B, 2, H, W]}`` (or ``{"heatmap", "ltrb": [B, 4, H, W]}`` with GIoU box
                terms), or a list of such dicts (one per hourglass stack: every term is averaged over
                the stacks).
            targets: ``heatmap [B, C, H, W]``, optionally ``heatmap_mask [B, 1, H, W]`` (0 = ignored),
                and the box targets: from ``render_targets`` ``size [B, M, 2]`` (w, h), ``offset [B, M, 2]``,
                ``index [B, M]`` long, ``mask [B, M]``; or from ``render_ttf_targets`` ``box_target
                [B, 4, H, W]`` and ``box_weight [B, 1, H, W]``.

        Returns:
            ``{"heatmap": FloatTensor[], "size": FloatTensor[], "offset": FloatTensor[]}`` (or
            ``{"heatmap", "box"}``), weighted, float32; the total loss is their sum.

        Raises:
            KeyError: naming a missing output or target key.
            ValueError: for an empty list of outputs or a heatmap shape mismatch.
        """
        stacks = [outputs] if isinstance(outputs, Mapping) else list(outputs)
        if not stacks:
            raise ValueError("CenterNetCriterion: outputs is an empty list; expected at least one stack")
        _require(targets, ("heatmap", *self.box_terms.target_keys), "targets")
        heatmap_mask = targets.get(OPTIONAL_TARGET_KEYS[0])
        heatmap_norm, box_norm = self.normalisers(targets)
        sums: dict[str, Tensor] = {}
        for stack_index, stack in enumerate(stacks):
            _require(stack, ("heatmap", *self.box_terms.output_keys), f"outputs[{stack_index}]")
            _check_heatmap_shape(stack["heatmap"], targets["heatmap"], stack_index)
            terms = {
                "heatmap": self.heatmap_loss(stack["heatmap"].float(), targets["heatmap"], heatmap_mask, heatmap_norm),
                **self.box_terms.terms(stack, targets, box_norm),
            }
            for key, value in terms.items():
                sums[key] = sums[key] + value.float() if key in sums else value.float()
        num_stacks = len(stacks)
        return {key: sums[key] * (weight / num_stacks) for key, weight in self.weights.items()}

    def normaliser_counts(self, targets: Mapping[str, Tensor]) -> Tensor:
        """This batch's counts ``[heatmap count, box count]`` before any all-reduce.

        The heatmap count is :meth:`HeatmapLoss.normaliser` of the heatmap loss; the box count is the box
        terms' (``D * num_objects`` with ``D = 2`` for L1, the sum of the box weights for GIoU). Returns
        FloatTensor[2] (no gradient).
        """
        heatmap = self.heatmap_loss.normaliser(targets["heatmap"], targets.get(OPTIONAL_TARGET_KEYS[0]))
        return torch.stack([heatmap.float(), self.box_terms.count(targets).float()]).detach()

    def normalisers(self, targets: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """What the heatmap and the box terms divide by: one all-reduce under DDP, none otherwise.

        Returns:
            ``(heatmap, box)`` float32 scalars. One process: this batch's count (heatmap) and count + 1e-4
            (box terms, as CenterNet and TTFNet). DDP: ``global / world_size`` of both (the heatmap
            count is clamped to >= 1 first, as a lone process would).
        """
        counts = self.normaliser_counts(targets)  # [2]
        if self.all_reduce_sum is None or self.world_size <= 1:
            return counts[0], counts[1] + NORMALISER_EPS
        total = self.all_reduce_sum(counts)
        return safe_denominator(total[0]) / self.world_size, (total[1] + NORMALISER_EPS) / self.world_size

    def extra_repr(self) -> str:
        return ", ".join(f"{key}_weight={weight}" for key, weight in self.weights.items())
