"""The ``identity`` neck: for backbones whose last map already has the output stride (e.g. the hourglass)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from centernet.models.registry import NECKS


class IdentityNeck(nn.Module):
    """Pass the last backbone map through unchanged.

    Args:
        in_channels: channels of the backbone's last map.

    Attributes:
        in_channels, out_channels: ``in_channels``; upsample_factor: 1.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"identity neck: in_channels must be >= 1, got {in_channels}")
        self.in_channels: int = in_channels
        self.out_channels: int = in_channels
        self.upsample_factor: int = 1

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Return ``features[-1]`` (FloatTensor[B, in_channels, h, w])."""
        return features[-1]


@NECKS.register("identity")
def identity(*, feature_channels: Sequence[int], channels: Sequence[int] = ()) -> IdentityNeck:
    """Build the identity neck; ``channels`` must be empty (it has no layers)."""
    if len(channels) > 0:
        raise ValueError(f"identity neck: has no layers, so model.neck.channels must be [], got {list(channels)}")
    return IdentityNeck(int(feature_channels[-1]))
