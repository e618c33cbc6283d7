"""The CenterNet training criterion: weighted heatmap, size and offset loss terms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from centernet.losses.regression import reg_l1_loss

OUTPUT_KEYS = ("heatmap", "size", "offset")
TARGET_KEYS = ("heatmap", "size", "offset", "index", "mask")
OPTIONAL_TARGET_KEYS = ("heatmap_mask",)


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
        return {key: sums[key] * (weights[key] / num_stacks) for key in OUTPUT_KEYS}

    def extra_repr(self) -> str:
        return (
            f"heatmap_weight={self.heatmap_weight}, size_weight={self.size_weight}, offset_weight={self.offset_weight}"
        )
