"""Modulated deformable convolution ("DCNv2") on ``torchvision.ops.deform_conv2d``.

:class:`DeformConv` replaces the original CenterNet's compiled ``DCN`` module (from the DCNv2 repository)
with the same parameters under the same names, so an original checkpoint loads unchanged:

- ``weight [out, in, kh, kw]`` and ``bias [out]``: the deformable convolution itself;
- ``conv_offset_mask``: a plain ``nn.Conv2d(in, deformable_groups * 3 * kh * kw, kernel_size, stride,
  padding, dilation, bias=True)`` that predicts, at every output position, the sampling offsets and the
  modulation mask. Its output is split into thirds ``o1, o2, mask_logits``; ``offset = cat(o1, o2)``
  (i.e. the first two thirds of the channels) and ``mask = sigmoid(mask_logits)``.

Offset layout (identical in the original DCNv2 kernel and in torchvision): the ``2 * G * kh * kw`` offset
channels are ordered ``[G, kh * kw, 2]`` with the pair ``(dy, dx)`` interleaved per kernel tap, so for
deformable group ``g`` and tap ``t = i * kw + j`` (row ``i``, column ``j`` of the kernel), channel
``2 * (g * kh * kw + t)`` is the vertical offset ``dy`` and the next channel the horizontal offset ``dx``.
The ``G * kh * kw`` mask channels are ordered ``[G, kh * kw]``. Output position ``(y, x)`` reads tap
``(i, j)`` at the fractional input location
``(y * stride - padding + i * dilation + dy, x * stride - padding + j * dilation + dx)``, bilinearly
interpolated with zeros outside the image, multiplied by the mask.

Deviation from the original: ``conv_offset_mask`` also gets ``dilation`` (the original omitted it, which
gives a shape mismatch for any dilation > 1 with the matching padding; CenterNet only uses dilation 1,
where both agree).

:class:`GridSampleDeformConv` computes the same layer with ``grid_sample`` and a matrix product, for
export to runtimes without a deformable-convolution operator (:func:`exportable_deform_convs`).
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

OFFSET_MASK_CHANNELS_PER_TAP = 3
"""Channels ``conv_offset_mask`` predicts per kernel tap and deformable group: dy, dx and the mask logit."""

OFFSET_CHANNELS_PER_TAP = 2
"""Offset channels per kernel tap and deformable group: (dy, dx)."""


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    """Expand an int to a ``(height, width)`` pair and check a pair has two entries.

    Args:
        value: an int or a pair of ints.
        name: the argument name, for the error message.

    Returns:
        ``(value, value)`` for an int, else ``tuple(value)``.
    """
    if isinstance(value, int):
        return value, value
    pair = tuple(value)
    if len(pair) != 2:
        raise ValueError(f"DeformConv: {name} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


class DeformConv(nn.Module):
    """Modulated deformable convolution with learned offsets and mask (DCNv2, the original ``DCN``).

    Initialisation follows the original: ``weight ~ U(-stdv, stdv)`` with
    ``stdv = 1 / sqrt(in_channels * kh * kw)``, ``bias = 0``; ``conv_offset_mask`` weight and bias are 0,
    so a fresh module samples the regular grid (all offsets 0) with the mask exactly
    ``sigmoid(0) = 0.5`` everywhere, i.e. it computes ``0.5 * conv2d(x, weight) + bias``.

    Args:
        in_channels: input channels; must be divisible by ``deformable_groups``.
        out_channels: output channels.
        kernel_size: kernel size (int or ``(kh, kw)``).
        stride: stride (int or pair).
        padding: zero padding (int or pair).
        dilation: dilation of the regular sampling grid (int or pair).
        deformable_groups: number of input-channel groups that get their own offsets and mask.
        bias: whether to add a learned bias.

    Attributes:
        weight: ``FloatTensor[out_channels, in_channels, kh, kw]``.
        bias: ``FloatTensor[out_channels]`` or ``None``.
        conv_offset_mask: ``nn.Conv2d`` with ``deformable_groups * 3 * kh * kw`` output channels.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int] = 3,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 1,
        dilation: int | tuple[int, int] = 1,
        deformable_groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if deformable_groups < 1 or in_channels % deformable_groups != 0:
            raise ValueError(
                f"DeformConv: in_channels ({in_channels}) must be divisible by deformable_groups "
                f"({deformable_groups}), which must be >= 1"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        self.dilation = _pair(dilation, "dilation")
        self.deformable_groups = deformable_groups

        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        num_taps = self.kernel_size[0] * self.kernel_size[1]
        self.conv_offset_mask = nn.Conv2d(
            in_channels,
            deformable_groups * OFFSET_MASK_CHANNELS_PER_TAP * num_taps,
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            bias=True,
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as the original DCN: uniform weight, zero bias, zero offset/mask predictor."""
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        stdv = 1.0 / math.sqrt(fan_in)
        nn.init.uniform_(self.weight, -stdv, stdv)
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        nn.init.zeros_(self.conv_offset_mask.weight)
        if self.conv_offset_mask.bias is not None:  # always built with a bias; checked for the type checker
            nn.init.zeros_(self.conv_offset_mask.bias)

    def offsets_and_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict the sampling offsets and the modulation mask from the input.

        Args:
            x: ``FloatTensor[B, in_channels, H, W]``.

        Returns:
            ``offset``: ``FloatTensor[B, 2 * G * kh * kw, H', W']``, ``(dy, dx)`` interleaved per tap
            (see the module docstring); ``mask``: ``FloatTensor[B, G * kh * kw, H', W']`` in ``(0, 1)``.
        """
        out = self.conv_offset_mask(x)  # [B, 3 * G * kh * kw, H', W']
        o1, o2, mask_logits = torch.chunk(out, OFFSET_MASK_CHANNELS_PER_TAP, dim=1)
        offset = torch.cat((o1, o2), dim=1)  # [B, 2 * G * kh * kw, H', W']
        return offset, torch.sigmoid(mask_logits)

    def deform(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Apply the deformable convolution with explicitly given offsets and mask.

        Args:
            x: ``FloatTensor[B, in_channels, H, W]``.
            offset: ``FloatTensor[B, 2 * G * kh * kw, H', W']``, ``(dy, dx)`` interleaved per tap.
            mask: ``FloatTensor[B, G * kh * kw, H', W']``.

        Returns:
            ``FloatTensor[B, out_channels, H', W']``.
        """
        num_taps = self.kernel_size[0] * self.kernel_size[1]
        expected = self.deformable_groups * OFFSET_CHANNELS_PER_TAP * num_taps
        if offset.shape[1] != expected or mask.shape[1] != self.deformable_groups * num_taps:
            raise ValueError(
                f"DeformConv: expected offset with {expected} and mask with {self.deformable_groups * num_taps} "
                f"channels, got {tuple(offset.shape)} and {tuple(mask.shape)}"
            )
        # torchvision's CPU kernel has no bfloat16/half version and no CPU autocast rule: run it in float32
        # outside autocast and return the input's dtype (what its CUDA autocast rule does)
        device_type = x.device.type
        no_autocast = (
            torch.autocast(device_type, enabled=False)
            if torch.amp.is_autocast_available(device_type)
            else contextlib.nullcontext()  # e.g. the meta device
        )
        with no_autocast:
            bias = self.bias.float() if self.bias is not None else None
            out = deform_conv2d(
                x.float(),
                offset.float(),
                self.weight.float(),
                bias,
                stride=self.stride,
                padding=self.padding,
                dilation=self.dilation,
                mask=mask.float(),
            )
        return out.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Deformable convolution with offsets and mask predicted from ``x`` itself.

        Args:
            x: ``FloatTensor[B, in_channels, H, W]``.

        Returns:
            ``FloatTensor[B, out_channels, H', W']`` with
            ``H' = (H + 2 * padding - dilation * (kh - 1) - 1) // stride + 1`` (``W'`` likewise).
        """
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"DeformConv: expected input [B, {self.in_channels}, H, W], got {tuple(x.shape)}")
        offset, mask = self.offsets_and_mask(x)
        return self.deform(x, offset, mask)

    def extra_repr(self) -> str:
        """Summarise the hyper-parameters for ``repr``."""
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, deformable_groups={self.deformable_groups}, "
            f"bias={self.bias is not None}"
        )


def _sample_taps(x: Tensor, offset: Tensor, conv: DeformConv, out_hw: tuple[int, int]) -> Tensor:
    """Bilinearly sample ``x`` at every kernel tap of every output position (zeros outside the image).

    Returns:
        ``[B, in_channels, kh * kw, H', W']`` samples, taps in ``i * kw + j`` order.
    """
    batch, channels, height, width = x.shape
    kh, kw = conv.kernel_size
    groups = conv.deformable_groups
    out_h, out_w = out_hw
    dtype, device = x.dtype, x.device
    base_y = torch.arange(out_h, dtype=dtype, device=device) * conv.stride[0] - conv.padding[0]  # [H']
    base_x = torch.arange(out_w, dtype=dtype, device=device) * conv.stride[1] - conv.padding[1]  # [W']
    tap_i = torch.arange(kh, dtype=dtype, device=device).repeat_interleave(kw) * conv.dilation[0]  # [T]
    tap_j = torch.arange(kw, dtype=dtype, device=device).repeat(kh) * conv.dilation[1]
    offset = offset.reshape(batch, groups, kh * kw, 2, out_h, out_w)
    ys = (tap_i.view(-1, 1, 1) + base_y.view(1, -1, 1)) + offset[:, :, :, 0]  # [B, G, T, H', W'] rows
    xs = (tap_j.view(-1, 1, 1) + base_x.view(1, 1, -1)) + offset[:, :, :, 1]  # [B, G, T, H', W'] columns
    # grid_sample with align_corners=True maps -1..1 onto pixel centres 0..size-1 and reads zeros for
    # corners outside the map, as deform_conv2d does (maps need H, W >= 2 for the scaling to be exact).
    grid_x = xs * (2.0 / max(width - 1, 1)) - 1.0
    grid_y = ys * (2.0 / max(height - 1, 1)) - 1.0
    grid = torch.stack((grid_x, grid_y), dim=-1)  # [B, G, T, H', W', 2]
    grid = grid.reshape(batch * groups, kh * kw * out_h, out_w, 2)
    x_groups = x.reshape(batch * groups, channels // groups, height, width)
    sampled = F.grid_sample(x_groups, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return sampled.reshape(batch, channels, kh * kw, out_h, out_w)


class GridSampleDeformConv(nn.Module):
    """A :class:`DeformConv` computed with ``grid_sample`` + a matrix product (same parameters, same output).

    Args:
        conv: the module to wrap; its parameters are shared, not copied.
    """

    def __init__(self, conv: DeformConv) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: Tensor) -> Tensor:
        """Args: ``x [B, in_channels, H, W]``. Returns ``[B, out_channels, H', W']``."""
        conv = self.conv
        offset, mask = conv.offsets_and_mask(x)  # [B, 2GT, H', W'], [B, GT, H', W']
        batch, _, out_h, out_w = mask.shape
        taps = conv.kernel_size[0] * conv.kernel_size[1]
        samples = _sample_taps(x, offset, conv, (out_h, out_w))  # [B, Cin, T, H', W']
        groups = conv.deformable_groups
        mask = mask.reshape(batch, groups, 1, taps, out_h, out_w)
        samples = samples.reshape(batch, groups, conv.in_channels // groups, taps, out_h, out_w) * mask
        columns = samples.reshape(batch, conv.in_channels * taps, out_h * out_w)  # channel-major, tap-minor
        weight = conv.weight.reshape(conv.out_channels, conv.in_channels * taps)
        out = torch.matmul(weight, columns).reshape(batch, conv.out_channels, out_h, out_w)
        if conv.bias is not None:
            out = out + conv.bias.view(1, -1, 1, 1)
        return out


def exportable_deform_convs(module: nn.Module) -> int:
    """Replace every :class:`DeformConv` inside ``module`` by a :class:`GridSampleDeformConv` (in place).

    Returns:
        The number of modules replaced.
    """
    replaced = 0
    for name, child in list(module.named_children()):
        if isinstance(child, DeformConv):
            setattr(module, name, GridSampleDeformConv(child))
            replaced += 1
        else:
            replaced += exportable_deform_convs(child)
    return replaced
