"""Stacked hourglass backbone: CornerNet's / the original CenterNet's "large hourglass" (Hourglass-104).

Layout (Newell et al. 2016 as modified by CornerNet, Law & Deng 2018):

- ``pre``: 7x7 conv (stride 2, 128 ch) + BatchNorm + ReLU, then a stride-2 residual block to ``dims[0]``
  channels: stride 4;
- per stack ``s``: an hourglass ``kps[s]`` of ``depth`` levels (each level: ``up1`` residual blocks at the
  current resolution; ``low1`` blocks starting with a stride-2 one (CornerNet replaced max pooling by a
  strided conv); ``low2`` the next level, or ``modules[-1]`` blocks at the bottom; ``low3`` blocks back to
  the current width; nearest 2x upsampling and a sum with ``up1``), then ``cnvs[s]``, a 3x3 conv + BN +
  ReLU to ``cnv_dim`` channels: the map the heads of stack ``s`` read;
- between stacks: ``inter = relu(inters_[s](inter) + cnvs_[s](cnv))`` (1x1 conv + BN each) followed by the
  residual block ``inters[s]``.

Hourglass-104: depth 5, ``dims`` (256, 256, 384, 384, 384, 512), ``modules`` (2, 2, 2, 2, 2, 4), 2 stacks,
``cnv_dim`` 256. Submodule names are the original's, so the original CenterNet ``hourglass`` checkpoint
keys ``pre.*``, ``kps.*``, ``cnvs.*``, ``cnvs_.*``, ``inters.*``, ``inters_.*`` map one to one onto
``backbone.*``.

The backbone returns one map per stack (``num_stacks``); the detector gives each stack its own head and,
in training, returns every stack's outputs (intermediate supervision). Input sides must be multiples of
``size_divisor = 4 * 2**depth`` (128 for Hourglass-104).

Weights: ``None`` (random, PyTorch's default init, as the original) or a local state_dict file in this
naming (keys of the original heads ``hm.*``, ``wh.*``, ``reg.*`` are ignored). There are no ImageNet
weights; the original fine-tunes from an ExtremeNet model (use ``model.init_checkpoint`` for an original
CenterNet checkpoint).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch
from torch import nn

from centernet.models.backbones.resnet import (
    IMAGENET_WEIGHTS,
    load_state_dict_checked,
    local_weights_file,
    read_state_dict_file,
)
from centernet.models.registry import BACKBONES

logger = logging.getLogger(__name__)

HOURGLASS104_DIMS = (256, 256, 384, 384, 384, 512)
"""Channels at each hourglass level, outermost first (the last is the bottleneck)."""
HOURGLASS104_MODULES = (2, 2, 2, 2, 2, 4)
"""Residual blocks per level (the last: blocks at the bottleneck)."""
HOURGLASS104_STACKS = 2
CNV_DIM = 256
"""Channels of the per-stack map the heads read."""
STEM_CHANNELS = 128
STEM_KERNEL = 7
STEM_STRIDE = 4
"""Downsampling of ``pre`` (two stride-2 layers), i.e. the output stride."""
_HEAD_PREFIXES = ("hm.", "wh.", "reg.")

WeightsArg = str | os.PathLike[str] | None


class ConvBnRelu(nn.Module):
    """k x k conv (no bias) + BatchNorm2d + ReLU (the original ``convolution``)."""

    def __init__(self, kernel: int, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=(kernel - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """FloatTensor[B, in, H, W] -> FloatTensor[B, out, H / stride, W / stride]."""
        return self.relu(self.bn(self.conv(x)))


class Residual(nn.Module):
    """Basic residual block: 3x3 conv-BN-ReLU, 3x3 conv-BN, plus the input (1x1 conv + BN when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.skip = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """FloatTensor[B, in, H, W] -> FloatTensor[B, out, H / stride, W / stride]."""
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu(out + self.skip(x))


def _blocks(
    in_channels: int, out_channels: int, count: int, *, stride: int = 1, widen_last: bool = False
) -> nn.Sequential:
    """``count`` residual blocks from ``in_channels`` to ``out_channels``.

    The channel change (and ``stride``) happens in the first block, or in the last with ``widen_last``
    (the original ``make_layer`` / ``make_hg_layer`` vs ``make_layer_revr``).
    """
    if widen_last:
        return nn.Sequential(
            *[Residual(in_channels, in_channels) for _ in range(count - 1)], Residual(in_channels, out_channels)
        )
    return nn.Sequential(
        Residual(in_channels, out_channels, stride), *[Residual(out_channels, out_channels) for _ in range(count - 1)]
    )


class HourglassModule(nn.Module):
    """One hourglass level (recursive; the original ``kp_module``).

    Args:
        depth: levels below and including this one (>= 1).
        dims: channels per level, this level first; ``len(dims) == depth + 1``.
        modules: residual blocks per level, this level first; ``len(modules) == depth + 1``.
    """

    def __init__(self, depth: int, dims: Sequence[int], modules: Sequence[int]) -> None:
        super().__init__()
        current, inner = dims[0], dims[1]
        self.up1 = _blocks(current, current, modules[0])
        self.low1 = _blocks(current, inner, modules[0], stride=2)
        self.low2: nn.Module
        if depth > 1:
            self.low2 = HourglassModule(depth - 1, dims[1:], modules[1:])
        else:
            self.low2 = _blocks(inner, inner, modules[1])
        self.low3 = _blocks(inner, current, modules[0], widen_last=True)
        self.up2 = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """FloatTensor[B, dims[0], H, W] -> FloatTensor[B, dims[0], H, W] (H, W multiples of 2**depth)."""
        return self.up1(x) + self.up2(self.low3(self.low2(self.low1(x))))


class HourglassBackbone(nn.Module):
    """Stacked hourglass network without heads.

    Args:
        depth: hourglass levels (5 for Hourglass-104).
        dims: channels per level, ``depth + 1`` entries.
        modules: residual blocks per level, ``depth + 1`` entries.
        num_stacks: number of hourglasses (each gets its own head).
        cnv_dim: channels of each stack's output map.
        stem_channels: channels of the 7x7 stem conv.
        weights: ``None`` or a local state_dict file (see the module docstring).

    Raises:
        ValueError: for inconsistent ``depth`` / ``dims`` / ``modules``, ``num_stacks < 1`` or
            ``weights="imagenet"`` (none exist).

    Attributes:
        out_channels: ``cnv_dim``; stride: 4; size_divisor: ``4 * 2**depth``; num_stacks: stacks;
        feature_channels: ``(cnv_dim,) * num_stacks`` (one map per stack).
    """

    def __init__(
        self,
        *,
        depth: int = len(HOURGLASS104_DIMS) - 1,
        dims: Sequence[int] = HOURGLASS104_DIMS,
        modules: Sequence[int] = HOURGLASS104_MODULES,
        num_stacks: int = HOURGLASS104_STACKS,
        cnv_dim: int = CNV_DIM,
        stem_channels: int = STEM_CHANNELS,
        weights: WeightsArg = None,
    ) -> None:
        super().__init__()
        if depth < 1 or len(dims) != depth + 1 or len(modules) != depth + 1 or min(modules) < 1:
            raise ValueError(
                f"hourglass: expected depth >= 1 and depth + 1 dims and modules (>= 1 each), got depth {depth}, "
                f"dims {list(dims)}, modules {list(modules)}"
            )
        if num_stacks < 1:
            raise ValueError(f"hourglass: num_stacks must be >= 1, got {num_stacks}")
        width = dims[0]
        self.pre = nn.Sequential(
            ConvBnRelu(STEM_KERNEL, 3, stem_channels, stride=2), Residual(stem_channels, width, stride=2)
        )
        self.kps = nn.ModuleList(HourglassModule(depth, dims, modules) for _ in range(num_stacks))
        self.cnvs = nn.ModuleList(ConvBnRelu(3, width, cnv_dim) for _ in range(num_stacks))
        self.inters = nn.ModuleList(Residual(width, width) for _ in range(num_stacks - 1))
        self.inters_ = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, width, 1, bias=False), nn.BatchNorm2d(width)) for _ in range(num_stacks - 1)
        )
        self.cnvs_ = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cnv_dim, width, 1, bias=False), nn.BatchNorm2d(width))
            for _ in range(num_stacks - 1)
        )
        self.relu = nn.ReLU(inplace=True)
        self.num_stacks: int = num_stacks
        self.out_channels: int = cnv_dim
        self.stride: int = STEM_STRIDE
        self.size_divisor: int = STEM_STRIDE * 2**depth
        self.feature_channels: tuple[int, ...] = (cnv_dim,) * num_stacks
        if isinstance(weights, str) and weights == IMAGENET_WEIGHTS:
            raise ValueError(
                "hourglass: there are no ImageNet weights (the original starts from an ExtremeNet model); set "
                "model.backbone.weights to null or a local state_dict file, or model.init_checkpoint to an "
                "original CenterNet hourglass .pth"
            )
        if weights is not None:
            path = local_weights_file(weights, "a state_dict file of this hourglass")
            load_state_dict_checked(self, read_state_dict_file(path), source=str(path), ignore_prefixes=_HEAD_PREFIXES)
            logger.info("loaded hourglass weights from %s", path)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Run all stacks.

        Args:
            images: FloatTensor[B, 3, H, W], normalised; H and W multiples of ``size_divisor``.

        Returns:
            ``num_stacks`` maps FloatTensor[B, cnv_dim, H / 4, W / 4], first stack first.
        """
        inter = self.pre(images)  # [B, dims[0], H/4, W/4]
        outputs = []
        for index in range(self.num_stacks):
            cnv = self.cnvs[index](self.kps[index](inter))
            outputs.append(cnv)
            if index < self.num_stacks - 1:
                inter = self.relu(self.inters_[index](inter) + self.cnvs_[index](cnv))
                inter = self.inters[index](inter)
        return outputs


@BACKBONES.register("hourglass104")
def hourglass104(*, weights: WeightsArg = None) -> HourglassBackbone:
    """Hourglass-104 (2 stacks, 256-channel maps at stride 4, input sides multiples of 128).

    See :class:`HourglassBackbone`.
    """
    return HourglassBackbone(weights=weights)
