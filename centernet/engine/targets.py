"""Target renderers: turn a collated batch into the tensors the criterion compares the outputs with.

A renderer is called as ``renderer(batch, (input_height, input_width), device) -> targets`` on every
training step, on the training device (see :data:`centernet.engine.trainer.TargetRenderer`). A new
target type is a new renderer selected in :func:`centernet.engine.build.build_trainer`, with a criterion
that reads its keys. :class:`ConfiguredTargets` (what training uses) follows the ``target`` config section:
CenterNet's targets, TTFNet's elliptical heatmaps with box targets over a Gaussian area, or a mix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from centernet.config.schema import TargetConfig
from centernet.targets import render_training_targets


class ConfiguredTargets:
    """The targets the ``target`` config section asks for (:func:`centernet.targets.render_training_targets`).

    With the default section (``heatmap: circular``, ``box: center``) the targets equal
    :func:`centernet.targets.render_targets` of the boxes divided by ``down_ratio``, bit for bit.

    Args:
        target: the ``target`` config section.
        num_classes: heatmap channels.
        down_ratio: input pixels per output cell.
    """

    def __init__(self, target: TargetConfig, *, num_classes: int, down_ratio: int) -> None:
        self.target = target
        self.num_classes = num_classes
        self.down_ratio = down_ratio

    def __call__(
        self, batch: Mapping[str, Any], input_size: tuple[int, int], device: torch.device
    ) -> dict[str, torch.Tensor]:
        """Args: the collated batch (``boxes [B, M, 4]`` input pixels, ``labels``, ``valid``, ``ignore``),
        the network input ``(height, width)``. Returns the :func:`render_training_targets` dict."""
        output_size = (input_size[0] // self.down_ratio, input_size[1] // self.down_ratio)
        return render_training_targets(
            batch["boxes"].to(device, non_blocking=True),
            batch["labels"].to(device, non_blocking=True),
            batch["valid"].to(device, non_blocking=True),
            ignore=batch["ignore"].to(device, non_blocking=True),
            target=self.target,
            num_classes=self.num_classes,
            output_size=output_size,
            down_ratio=self.down_ratio,
        )
