"""Normalising uint8 image batches on their device (the first step of every forward pass)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ImageNormalizer(nn.Module):
    """uint8 images ``[B, 3, H, W]`` → float ``(x / 255 - mean) / std`` on the images' device.

    Args:
        mean: per-channel mean as fractions of 255, in the images' channel order.
        std: per-channel standard deviation as fractions of 255.
    """

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float], *, channels_last: bool = False) -> None:
        super().__init__()
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        scale = 1.0 / (255.0 * torch.tensor(std, dtype=torch.float32))
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", (-torch.tensor(mean) / torch.tensor(std)).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Args: images (uint8 ``[B, 3, H, W]``). Returns float32 ``[B, 3, H, W]``."""
        return torch.addcmul(self.shift, images.float(), self.scale).contiguous(memory_format=self.memory_format)
