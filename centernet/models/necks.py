"""Upsampling necks: turn a stride-32 backbone map into the stride-4 map the heads read.

``deconv`` is the original CenterNet ``msra_resnet`` neck: ``n`` x [ConvTranspose2d (stride 2, no bias)
-> BatchNorm2d -> ReLU], each layer doubling the resolution. Its submodules live in one ``nn.Sequential``
named ``layers`` with the original's flat layout, so the original checkpoint key ``deconv_layers.<i>.*``
maps to ``neck.layers.<i>.*``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from centernet.models.registry import NECKS

DEFAULT_DECONV_CHANNELS = (256, 256, 256)
"""Output channels of the original's three deconvolution layers."""

DECONV_STRIDE = 2
"""Upsampling factor of one deconvolution layer."""

DECONV_INIT_STD = 0.001
"""Standard deviation of the deconvolution weights at initialisation (as the original)."""

# kernel size -> (padding, output_padding) giving an exact 2x upsampling (the original's _get_deconv_cfg)
_DECONV_PADDING: dict[int, tuple[int, int]] = {4: (1, 0), 3: (1, 1), 2: (0, 0)}


class DeconvNeck(nn.Module):
    """The original CenterNet-ResNet deconvolution neck.

    Args:
        in_channels: channels of the backbone map.
        channels: output channels of each deconvolution layer (one entry per 2x upsampling).
        kernel_size: deconvolution kernel size, 4 (default, as the original), 3 or 2.

    Attributes:
        out_channels: ``channels[-1]``.
        upsample_factor: ``2 ** len(channels)`` (8 for three layers).
        layers: ``nn.Sequential`` of [ConvTranspose2d, BatchNorm2d, ReLU] x ``len(channels)``.
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int] = DEFAULT_DECONV_CHANNELS,
        *,
        kernel_size: int = 4,
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if not channels:
            raise ValueError("deconv neck: channels is empty, expected at least one layer, e.g. [256, 256, 256]")
        if in_channels <= 0 or min(channels) <= 0:
            raise ValueError(
                f"deconv neck: channels must be positive, got in_channels={in_channels}, channels={list(channels)}"
            )
        if kernel_size not in _DECONV_PADDING:
            raise ValueError(
                f"deconv neck: kernel_size {kernel_size} is not supported, valid are {sorted(_DECONV_PADDING)}"
            )
        padding, output_padding = _DECONV_PADDING[kernel_size]
        modules: list[nn.Module] = []
        previous = in_channels
        for planes in channels:
            modules.append(
                nn.ConvTranspose2d(
                    previous,
                    planes,
                    kernel_size,
                    stride=DECONV_STRIDE,
                    padding=padding,
                    output_padding=output_padding,
                    bias=False,
                )
            )
            modules.append(nn.BatchNorm2d(planes))
            modules.append(nn.ReLU(inplace=True))
            previous = planes
        self.layers = nn.Sequential(*modules)
        self.in_channels = in_channels
        self.out_channels: int = channels[-1]
        self.upsample_factor: int = DECONV_STRIDE ** len(channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as the original: deconv weights ~ N(0, 0.001), BatchNorm weight 1 and bias 0."""
        for module in self.layers:
            if isinstance(module, nn.ConvTranspose2d):
                nn.init.normal_(module.weight, std=DECONV_INIT_STD)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Upsample.

        Args:
            features: FloatTensor[B, in_channels, h, w].

        Returns:
            FloatTensor[B, out_channels, h * upsample_factor, w * upsample_factor].
        """
        return self.layers(features)


@NECKS.register("deconv")
def deconv(*, in_channels: int, channels: Sequence[int] = DEFAULT_DECONV_CHANNELS) -> DeconvNeck:
    """Build the original deconvolution neck; see :class:`DeconvNeck`."""
    return DeconvNeck(in_channels, channels)
