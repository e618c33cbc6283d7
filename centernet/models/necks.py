"""Upsampling necks: turn the backbone's feature maps into the stride-4 map the heads read.

Every neck is called with the list of backbone maps (finest first, the stride-32 map last) and is built
from the backbone's ``feature_channels``.

``deconv`` is the original CenterNet ``msra_resnet`` neck: ``n`` x [ConvTranspose2d (stride 2, no bias)
-> BatchNorm2d -> ReLU] on the last map, each layer doubling the resolution. Its submodules live in one
``nn.Sequential`` named ``layers`` with the original's flat layout, so the original checkpoint key
``deconv_layers.<i>.*`` maps to ``neck.layers.<i>.*``.

``deconv_lateral`` (not in the original) adds, after each upsampling, a 1x1 conv + BatchNorm projection
of the backbone map of the same stride (the skip connections of FPN / TTFNet). Without them all spatial
detail has to pass through the stride-32 map, which is only 4x4 cells for a 128-pixel input; with them
small inputs train several times faster. Its weights are a superset of ``deconv``'s.
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

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Upsample the last backbone map.

        Args:
            features: backbone maps, the last FloatTensor[B, in_channels, h, w].

        Returns:
            FloatTensor[B, out_channels, h * upsample_factor, w * upsample_factor].
        """
        return self.layers(features[-1])


class LateralDeconvNeck(DeconvNeck):
    """:class:`DeconvNeck` plus a projected skip connection after each upsampling.

    After deconvolution layer ``i`` (output stride ``32 / 2**(i+1)``), the backbone map of that stride,
    projected by 1x1 conv (no bias) -> BatchNorm2d, is added before the ReLU of the next stage's input.

    Args:
        feature_channels: channels of the backbone maps, finest first (strides 4, 8, 16, 32).
        channels: output channels of each deconvolution layer; at most ``len(feature_channels) - 1`` layers.
        kernel_size: deconvolution kernel size.
    """

    def __init__(
        self,
        feature_channels: Sequence[int],
        channels: Sequence[int] = DEFAULT_DECONV_CHANNELS,
        *,
        kernel_size: int = 4,
    ) -> None:
        feature_channels = tuple(int(c) for c in feature_channels)
        channels = tuple(int(c) for c in channels)
        if len(channels) >= len(feature_channels):
            raise ValueError(
                f"deconv_lateral neck: {len(channels)} layers need {len(channels) + 1} backbone maps, "
                f"the backbone gives {len(feature_channels)}"
            )
        super().__init__(feature_channels[-1], channels, kernel_size=kernel_size)
        skip_channels = feature_channels[-2 : -len(channels) - 2 : -1]  # strides 16, 8, 4
        self.laterals = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size=1, bias=False), nn.BatchNorm2d(c_out))
            for c_in, c_out in zip(skip_channels, channels, strict=True)
        )

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Upsample the last map, adding the projected map of each intermediate stride.

        Args:
            features: backbone maps, finest first.

        Returns:
            FloatTensor[B, out_channels, h * upsample_factor, w * upsample_factor].
        """
        x = features[-1]
        stages = [self.layers[i : i + 3] for i in range(0, len(self.layers), 3)]  # [deconv, BN, ReLU] each
        for depth, (stage, lateral) in enumerate(zip(stages, self.laterals, strict=True)):
            deconv, norm, relu = stage
            x = relu(norm(deconv(x)) + lateral(features[-2 - depth]))
        return x


@NECKS.register("deconv")
def deconv(*, feature_channels: Sequence[int], channels: Sequence[int] = DEFAULT_DECONV_CHANNELS) -> DeconvNeck:
    """Build the original deconvolution neck on the last backbone map; see :class:`DeconvNeck`."""
    return DeconvNeck(feature_channels[-1], channels)


@NECKS.register("deconv_lateral")
def deconv_lateral(
    *, feature_channels: Sequence[int], channels: Sequence[int] = DEFAULT_DECONV_CHANNELS
) -> LateralDeconvNeck:
    """Build the deconvolution neck with skip connections; see :class:`LateralDeconvNeck`."""
    return LateralDeconvNeck(feature_channels, channels)
