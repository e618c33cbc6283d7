"""The CenterNet prediction head: per-pixel class heatmap logits, box size and centre offset.

Each branch is 3x3 conv (bias) -> ReLU -> 1x1 conv, as in the original, so the original checkpoint keys
``hm.<i>.*``, ``wh.<i>.*`` and ``reg.<i>.*`` map to ``head.heatmap.<i>.*``, ``head.size.<i>.*`` and
``head.offset.<i>.*``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

HEATMAP = "heatmap"
SIZE = "size"
OFFSET = "offset"
OUTPUT_NAMES = (HEATMAP, SIZE, OFFSET)
"""Keys of the output dict, in order."""

BOX_SIZE_CHANNELS = 2  # (w, h)
OFFSET_CHANNELS = 2  # (dx, dy)
FINAL_INIT_STD = 0.001
"""Standard deviation of the final 1x1 conv weights at initialisation."""

_HIDDEN_KERNEL = 3


def prior_bias(prior_prob: float) -> float:
    """Bias making ``sigmoid(bias) == prior_prob``: ``-log((1 - p) / p)`` (RetinaNet's prior init).

    Args:
        prior_prob: initial foreground probability, in (0, 1).

    Returns:
        The logit of ``prior_prob`` (about -2.197 for 0.1).

    Raises:
        ValueError: if ``prior_prob`` is not strictly between 0 and 1.
    """
    if not 0.0 < prior_prob < 1.0:
        raise ValueError(f"prior_prob must be in (0, 1), got {prior_prob}")
    return -math.log((1.0 - prior_prob) / prior_prob)


def _branch(in_channels: int, out_channels: int, head_conv: int) -> nn.Sequential:
    """3x3 conv -> ReLU -> 1x1 conv, or a single 1x1 conv when ``head_conv <= 0``."""
    if head_conv <= 0:
        return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1))
    return nn.Sequential(
        nn.Conv2d(in_channels, head_conv, kernel_size=_HIDDEN_KERNEL, padding=_HIDDEN_KERNEL // 2, bias=True),
        nn.ReLU(inplace=True),
        nn.Conv2d(head_conv, out_channels, kernel_size=1),
    )


class CenterNetHead(nn.Module):
    """Three convolutional branches on the stride-4 feature map.

    Initialisation: the final 1x1 conv of every branch gets weights ~ N(0, 0.001); its bias is
    ``-log((1 - prior_prob) / prior_prob)`` for the heatmap (so ``sigmoid(heatmap) ~= prior_prob`` at
    the start) and 0 for size and offset. The hidden 3x3 convs keep PyTorch's default initialisation.
    (The original ``msra_resnet`` left the heatmap's final weights at the default init; its DLA and
    ResDCN heads use N(0, 0.001) as here.)

    Args:
        in_channels: channels of the neck output.
        num_classes: heatmap channels (one per class).
        head_conv: hidden channels of each branch; ``<= 0`` makes each branch a single 1x1 conv.
        prior_prob: initial foreground probability of the heatmap, in (0, 1).

    Attributes:
        heatmap, size, offset: the branches (``nn.Sequential``).
    """

    def __init__(self, in_channels: int, num_classes: int, *, head_conv: int = 64, prior_prob: float = 0.1) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"CenterNetHead: num_classes must be >= 1, got {num_classes}")
        if in_channels < 1:
            raise ValueError(f"CenterNetHead: in_channels must be >= 1, got {in_channels}")
        self.num_classes = num_classes
        self.prior_prob = prior_prob
        self.heatmap = _branch(in_channels, num_classes, head_conv)
        self.size = _branch(in_channels, BOX_SIZE_CHANNELS, head_conv)
        self.offset = _branch(in_channels, OFFSET_CHANNELS, head_conv)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise the final layers (see the class docstring)."""
        heatmap_bias = prior_bias(self.prior_prob)
        for branch, bias in ((self.heatmap, heatmap_bias), (self.size, 0.0), (self.offset, 0.0)):
            final = branch[-1]
            assert isinstance(final, nn.Conv2d) and final.bias is not None  # built by _branch
            nn.init.normal_(final.weight, std=FINAL_INIT_STD)
            nn.init.constant_(final.bias, bias)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Predict the three maps.

        Args:
            features: FloatTensor[B, in_channels, h, w].

        Returns:
            ``{"heatmap": [B, num_classes, h, w] logits, "size": [B, 2, h, w] (w, h) in output pixels,
            "offset": [B, 2, h, w] (dx, dy) in output pixels}``.
        """
        return {
            HEATMAP: self.heatmap(features),
            SIZE: self.size(features),
            OFFSET: self.offset(features),
        }
