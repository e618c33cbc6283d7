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

``dcn_deconv`` is the original CenterNet ``resnet_dcn`` (ResDCN) neck: ``n`` x [3x3 deformable conv ->
BatchNorm2d -> ReLU -> bilinear-initialised ConvTranspose2d (stride 2, no bias) -> BatchNorm2d -> ReLU],
in one flat ``nn.Sequential`` named ``layers`` with the original's layout (``deconv_layers.<i>.*`` ->
``neck.layers.<i>.*``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from centernet.models.dcn import DeformConv
from centernet.models.registry import NECKS

DEFAULT_DECONV_CHANNELS = (256, 256, 256)
"""Output channels of the original's three deconvolution layers."""

DECONV_STRIDE = 2
"""Upsampling factor of one deconvolution layer."""

DECONV_INIT_STD = 0.001
"""Standard deviation of the deconvolution weights at initialisation (as the original)."""

# kernel size -> (padding, output_padding) giving an exact 2x upsampling (the original's _get_deconv_cfg)
_DECONV_PADDING: dict[int, tuple[int, int]] = {4: (1, 0), 3: (1, 1), 2: (0, 0)}


class UpsamplingStack(nn.Module):
    """A ``layers`` Sequential applied to the last backbone map, doubling its resolution per stage."""

    layers: nn.Sequential

    def _set_layers(self, modules: list[nn.Module], in_channels: int, channels: Sequence[int]) -> None:
        """Store the stack and the attributes the detector reads (``out_channels``, ``upsample_factor``)."""
        self.layers = nn.Sequential(*modules)
        self.in_channels = in_channels
        self.out_channels: int = channels[-1]
        self.upsample_factor: int = DECONV_STRIDE ** len(channels)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Upsample the last backbone map.

        Args:
            features: backbone maps, the last FloatTensor[B, in_channels, h, w].

        Returns:
            FloatTensor[B, out_channels, h * upsample_factor, w * upsample_factor].
        """
        return self.layers(features[-1])


class DeconvNeck(UpsamplingStack):
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
        self._set_layers(modules, in_channels, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as the original: deconv weights ~ N(0, 0.001), BatchNorm weight 1 and bias 0."""
        for module in self.layers:
            if isinstance(module, nn.ConvTranspose2d):
                nn.init.normal_(module.weight, std=DECONV_INIT_STD)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


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


DEFAULT_DCN_DECONV_CHANNELS = (256, 128, 64)
"""Output channels of the three stages of the original ResDCN neck."""

DCN_KERNEL_SIZE = 3
"""Kernel size of the deformable convolution in each ResDCN stage (padding 1 keeps the size)."""

UP_KERNEL_SIZE = 4
"""Kernel size of the bilinear-initialised transposed convolution in each ResDCN stage."""


def bilinear_kernel(size: int) -> torch.Tensor:
    """The 2-D bilinear-interpolation kernel used to initialise upsampling transposed convolutions.

    ``k[i, j] = (1 - |i / f - c|) * (1 - |j / f - c|)`` with ``f = ceil(size / 2)`` and
    ``c = (2f - 1 - f % 2) / (2f)`` (the original's ``fill_up_weights``); for ``size`` 4 it is the outer
    product of ``[1, 3, 3, 1] / 4`` with itself.

    Args:
        size: kernel height and width (>= 1).

    Returns:
        FloatTensor[size, size].

    Raises:
        ValueError: if ``size < 1``.
    """
    if size < 1:
        raise ValueError(f"bilinear_kernel: size must be >= 1, got {size}")
    factor = (size + 1) // 2  # ceil(size / 2)
    centre = (2 * factor - 1 - factor % 2) / (2.0 * factor)
    taps = 1.0 - (torch.arange(size, dtype=torch.float64) / factor - centre).abs()  # [size]
    return torch.outer(taps, taps).float()


def fill_up_weights(deconv: nn.ConvTranspose2d) -> None:
    """Initialise a transposed convolution as the original ``fill_up_weights`` does, in place.

    ``weight [in, out, kh, kw]``: ``weight[c, 0]`` becomes :func:`bilinear_kernel` for every input
    channel ``c``; ``weight[:, 1:]`` keep their current values. For a depthwise (``groups == in``) layer
    this is a per-channel bilinear upsampling; for the dense ResDCN layer it makes output channel 0 the
    bilinear upsampling of the sum of the inputs and leaves the other output channels at PyTorch's default
    initialisation, exactly as the original.

    Args:
        deconv: the layer; its kernel must be square.

    Raises:
        ValueError: if the kernel is not square.
    """
    kh, kw = deconv.kernel_size
    if kh != kw:
        raise ValueError(f"fill_up_weights: expected a square kernel, got {deconv.kernel_size}")
    with torch.no_grad():
        deconv.weight[:, 0] = bilinear_kernel(kh).to(deconv.weight)


class DcnDeconvNeck(UpsamplingStack):
    """The original CenterNet ResDCN neck (``resnet_dcn.py``).

    Each stage is [DeformConv 3x3 (previous -> planes) -> BatchNorm2d -> ReLU -> ConvTranspose2d 4x4
    stride 2 padding 1 (planes -> planes, no bias) -> BatchNorm2d -> ReLU], applied to the last backbone
    map. The 6 modules per stage live in one flat ``nn.Sequential`` named ``layers``, so the original
    checkpoint key ``deconv_layers.<i>.*`` maps to ``neck.layers.<i>.*``.

    Initialisation as the original: DeformConv as :class:`~centernet.models.dcn.DeformConv` (zero offsets,
    mask 0.5), transposed convolutions by :func:`fill_up_weights`, BatchNorm weight 1 and bias 0.

    Args:
        in_channels: channels of the backbone map.
        channels: output channels of each stage (one entry per 2x upsampling).

    Attributes:
        out_channels: ``channels[-1]``.
        upsample_factor: ``2 ** len(channels)`` (8 for three stages).
        layers: ``nn.Sequential`` of [DeformConv, BatchNorm2d, ReLU, ConvTranspose2d, BatchNorm2d, ReLU]
            x ``len(channels)``.
    """

    def __init__(self, in_channels: int, channels: Sequence[int] = DEFAULT_DCN_DECONV_CHANNELS) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if not channels:
            raise ValueError("dcn_deconv neck: channels is empty, expected at least one stage, e.g. [256, 128, 64]")
        if in_channels <= 0 or min(channels) <= 0:
            raise ValueError(
                f"dcn_deconv neck: channels must be positive, got in_channels={in_channels}, channels={list(channels)}"
            )
        padding, output_padding = _DECONV_PADDING[UP_KERNEL_SIZE]
        modules: list[nn.Module] = []
        previous = in_channels
        for planes in channels:
            modules += [
                DeformConv(previous, planes, DCN_KERNEL_SIZE, padding=DCN_KERNEL_SIZE // 2),
                nn.BatchNorm2d(planes),
                nn.ReLU(inplace=True),
                nn.ConvTranspose2d(
                    planes,
                    planes,
                    UP_KERNEL_SIZE,
                    stride=DECONV_STRIDE,
                    padding=padding,
                    output_padding=output_padding,
                    bias=False,
                ),
                nn.BatchNorm2d(planes),
                nn.ReLU(inplace=True),
            ]
            previous = planes
        self._set_layers(modules, in_channels, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as the original (see the class docstring)."""
        for module in self.layers:
            if isinstance(module, DeformConv):
                module.reset_parameters()
            elif isinstance(module, nn.ConvTranspose2d):
                module.reset_parameters()  # PyTorch default for the weights fill_up_weights leaves alone
                fill_up_weights(module)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


@NECKS.register("dcn_deconv")
def dcn_deconv(
    *, feature_channels: Sequence[int], channels: Sequence[int] = DEFAULT_DCN_DECONV_CHANNELS
) -> DcnDeconvNeck:
    """Build the original ResDCN neck on the last backbone map; see :class:`DcnDeconvNeck`."""
    return DcnDeconvNeck(feature_channels[-1], channels)
