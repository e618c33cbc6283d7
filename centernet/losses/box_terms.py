"""The box-regression terms of the criterion, one strategy per ``loss.box.type``.

- :class:`CentreL1Terms` (``l1``, CenterNet): ``size`` and ``offset``, L1 at the object centres
  (:func:`centernet.losses.reg_l1_loss`), normalised by the number of object coordinates.
- :class:`LtrbGIoUTerms` (``giou``, TTFNet): ``box``, GIoU of the dense ``ltrb`` boxes
  (:func:`centernet.losses.ltrb_giou_loss`), normalised by the sum of the box weights.

A strategy names the output and target keys it reads, counts what its terms divide by (before any
all-reduce; the criterion adds ``1e-4`` and reduces it together with the heatmap count) and returns its
unweighted terms for one stack; the criterion applies :attr:`BoxTerms.weights`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from torch import Tensor

from centernet.losses.giou import ltrb_giou_loss
from centernet.losses.regression import reg_l1_loss, regression_count

Maps = Mapping[str, Tensor]


class BoxTerms(Protocol):
    """What the criterion needs of a box-regression strategy."""

    output_keys: tuple[str, ...]  # model outputs read besides ``heatmap``
    target_keys: tuple[str, ...]  # targets read besides ``heatmap``
    weights: dict[str, float]  # term name -> weight, in the order the terms are returned

    def count(self, targets: Mapping[str, Tensor]) -> Tensor:
        """FloatTensor[] this batch's normaliser before the ``1e-4`` and any all-reduce."""
        ...

    def terms(self, outputs: Maps, targets: Maps, normaliser: Tensor) -> dict[str, Tensor]:
        """The unweighted float32 terms of one stack, keyed as :attr:`weights`."""
        ...


class CentreL1Terms:
    """CenterNet's ``size`` and ``offset`` L1 terms at the object centres.

    Args:
        size_weight: weight of the size term (0.1 in CenterNet).
        offset_weight: weight of the offset term.
    """

    output_keys: tuple[str, ...] = ("size", "offset")
    target_keys: tuple[str, ...] = ("size", "offset", "index", "mask")

    def __init__(self, *, size_weight: float = 0.1, offset_weight: float = 1.0) -> None:
        self.weights = {"size": float(size_weight), "offset": float(offset_weight)}

    def count(self, targets: Mapping[str, Tensor]) -> Tensor:
        """``D * num_objects`` (``D = 2`` coordinates per object)."""
        return regression_count(targets["mask"], targets["size"].shape[-1])

    def terms(self, outputs: Maps, targets: Maps, normaliser: Tensor) -> dict[str, Tensor]:
        """Unweighted L1 ``size`` / ``offset`` of ``outputs`` ``[B, 2, H, W]`` maps at the object centres."""
        index, mask = targets["index"], targets["mask"]
        return {
            "size": reg_l1_loss(outputs["size"], targets["size"], index, mask, normaliser),
            "offset": reg_l1_loss(outputs["offset"], targets["offset"], index, mask, normaliser),
        }


class LtrbGIoUTerms:
    """TTFNet's ``box`` term: GIoU of the ``ltrb`` boxes on the cells with a positive box weight.

    Args:
        weight: weight of the box term (TTFNet's 5).
        down_ratio: input pixels per output cell (the ``ltrb`` distances are measured from ``x * d, y * d``).
    """

    output_keys: tuple[str, ...] = ("ltrb",)
    target_keys: tuple[str, ...] = ("box_target", "box_weight")

    def __init__(self, *, weight: float, down_ratio: int) -> None:
        self.weights = {"box": float(weight)}
        self.down_ratio = int(down_ratio)

    def count(self, targets: Mapping[str, Tensor]) -> Tensor:
        """The sum of the per-cell box weights."""
        return targets["box_weight"].float().sum()

    def terms(self, outputs: Maps, targets: Maps, normaliser: Tensor) -> dict[str, Tensor]:
        """Unweighted GIoU ``box`` term of ``outputs["ltrb"]`` ``[B, 4, H, W]`` against the dense box targets."""
        loss = ltrb_giou_loss(
            outputs["ltrb"], targets["box_target"], targets["box_weight"], down_ratio=self.down_ratio,
            normaliser=normaliser,
        )
        return {"box": loss}
