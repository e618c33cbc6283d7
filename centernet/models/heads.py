"""The CenterNet prediction head: per-pixel class heatmap logits plus a box branch.

Each branch is 3x3 conv (bias) -> ReLU -> 1x1 conv, as in the original, so the original checkpoint keys
``hm.<i>.*``, ``wh.<i>.*`` and ``reg.<i>.*`` map to ``head.heatmap.<i>.*``, ``head.size.<i>.*`` and
``head.offset.<i>.*``. The box branch is either CenterNet's box size and centre offset (``size_offset``,
the default) or TTFNet's distances from the cell to the four box sides (``ltrb``, keys ``head.ltrb.<i>.*``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

HEATMAP = "heatmap"
SIZE = "size"
OFFSET = "offset"
LTRB = "ltrb"
OUTPUT_NAMES = (HEATMAP, SIZE, OFFSET)
"""Keys of the output dict of the default (``size_offset``) head, in order."""
LTRB_OUTPUT_NAMES = (HEATMAP, LTRB)
"""Keys of the output dict of the ``ltrb`` head, in order."""
BOX_BRANCHES = ("size_offset", "ltrb")
"""Values of ``box``: what the head predicts besides the heatmap."""

BOX_SIZE_CHANNELS = 2  # (w, h)
OFFSET_CHANNELS = 2  # (dx, dy)
LTRB_CHANNELS = 4  # distances to the (left, top, right, bottom) box sides
LTRB_SCALE = 16.0  # TTFNet's wh_offset_base: input pixels per unit of the rectified ltrb output
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
    """Convolutional branches on the stride-4 feature map: heatmap plus size and offset, or ltrb.

    Initialisation: the final 1x1 conv of every branch gets weights ~ N(0, 0.001); its bias is
    ``-log((1 - prior_prob) / prior_prob)`` for the heatmap (so ``sigmoid(heatmap) ~= prior_prob`` at
    the start) and 0 for the box branches. The hidden 3x3 convs keep PyTorch's default initialisation.
    (The original ``msra_resnet`` left the heatmap's final weights at the default init; its DLA and
    ResDCN heads use N(0, 0.001) as here; TTFNet initialises its ltrb branch with N(0, 0.001) too.)

    Args:
        in_channels: channels of the neck output.
        num_classes: heatmap channels (one per class).
        head_conv: hidden channels of each branch; ``<= 0`` makes each branch a single 1x1 conv.
        prior_prob: initial foreground probability of the heatmap, in (0, 1).
        box: ``size_offset`` (CenterNet: ``size`` and ``offset`` branches) or ``ltrb`` (TTFNet: one
            4-channel ``ltrb`` branch whose output is ``relu(raw) * ltrb_scale``).
        ltrb_scale: input pixels per unit of the rectified ltrb output (TTFNet's ``wh_offset_base``).

    Attributes:
        heatmap, size, offset / heatmap, ltrb: the branches (``nn.Sequential``).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        head_conv: int = 64,
        prior_prob: float = 0.1,
        box: str = "size_offset",
        ltrb_scale: float = LTRB_SCALE,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"CenterNetHead: num_classes must be >= 1, got {num_classes}")
        if in_channels < 1:
            raise ValueError(f"CenterNetHead: in_channels must be >= 1, got {in_channels}")
        if box not in BOX_BRANCHES:
            raise ValueError(f"model.head.box: {box!r} is not one of {list(BOX_BRANCHES)}")
        if not ltrb_scale > 0:
            raise ValueError(f"model.head.ltrb_scale must be > 0, got {ltrb_scale}")
        self.num_classes = num_classes
        self.prior_prob = prior_prob
        self.box = box
        self.ltrb_scale = float(ltrb_scale)
        # Branches are created in this order so that a seed gives the same weights as before ltrb existed.
        self.heatmap = _branch(in_channels, num_classes, head_conv)
        if box == "ltrb":
            self.ltrb = _branch(in_channels, LTRB_CHANNELS, head_conv)
        else:
            self.size = _branch(in_channels, BOX_SIZE_CHANNELS, head_conv)
            self.offset = _branch(in_channels, OFFSET_CHANNELS, head_conv)
        self.reset_parameters()

    @property
    def output_names(self) -> tuple[str, ...]:
        """Keys of the output dict: :data:`OUTPUT_NAMES` or :data:`LTRB_OUTPUT_NAMES`."""
        return LTRB_OUTPUT_NAMES if self.box == "ltrb" else OUTPUT_NAMES

    def reset_parameters(self) -> None:
        """Initialise the final layers (see the class docstring)."""
        biases = {HEATMAP: prior_bias(self.prior_prob), SIZE: 0.0, OFFSET: 0.0, LTRB: 0.0}
        for name in self.output_names:
            final = getattr(self, name)[-1]
            assert isinstance(final, nn.Conv2d) and final.bias is not None  # built by _branch
            nn.init.normal_(final.weight, std=FINAL_INIT_STD)
            nn.init.constant_(final.bias, biases[name])

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Predict the maps.

        Args:
            features: FloatTensor[B, in_channels, h, w].

        Returns:
            ``size_offset``: ``{"heatmap": [B, num_classes, h, w] logits, "size": [B, 2, h, w] (w, h) in
            output pixels, "offset": [B, 2, h, w] (dx, dy) in output pixels}``; ``ltrb``: ``{"heatmap": ...,
            "ltrb": [B, 4, h, w]}`` non-negative distances from the cell ``(x * s, y * s)`` to the box's
            left, top, right and bottom sides, in input pixels (``s`` the output stride).
        """
        if self.box == "ltrb":
            return {HEATMAP: self.heatmap(features), LTRB: torch.relu(self.ltrb(features)) * self.ltrb_scale}
        return {
            HEATMAP: self.heatmap(features),
            SIZE: self.size(features),
            OFFSET: self.offset(features),
        }
