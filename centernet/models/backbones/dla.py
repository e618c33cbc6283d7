"""DLA-34 backbone (Deep Layer Aggregation, Yu et al. 2018), as the base of the original CenterNet ``DLASeg``.

The trunk is a 7x7 stem (``base_layer``), two plain conv levels (``level0``, ``level1``) and four
hierarchical aggregation trees (``level2`` .. ``level5``) of basic residual blocks. A tree of depth 1 is
two blocks and a ``root`` (1x1 conv over the concatenated block outputs); a deeper tree nests trees and
passes its children to the last root. Each level halves the resolution except ``level0``, so the six maps
``forward`` returns have strides 1, 2, 4, 8, 16, 32 and channels 16, 32, 64, 128, 256, 512.

Submodule names follow the original code, so the original CenterNet ``dla_34`` checkpoint keys ``base.*``
map one to one onto ``backbone.*``, and so do the keys of the original ImageNet file (its ``fc.*``
classifier keys are ignored).

Trees whose first child is itself a tree own a ``project`` (1x1 conv + BatchNorm) whose output the
original computes and then discards (the child tree recomputes its own residual). It is kept so the
checkpoints load, never run, and frozen (``requires_grad=False``) so that DDP sees no unused parameters.

Weights (the ``weights`` argument): ``None`` (random: Kaiming-normal fan-out convs, BatchNorm 1 / 0),
``"imagenet"`` (the original ``dla34-ba72cf86.pth``, downloaded into the torch hub cache; offline, a
``RuntimeError`` explains how to pass a local copy) or the path to a local state_dict file.
"""

from __future__ import annotations

import logging
import os
import pickle

import torch
from torch import nn

from centernet.models.backbones.resnet import (
    IMAGENET_WEIGHTS,
    load_state_dict_checked,
    local_weights_file,
    read_state_dict_file,
)
from centernet.models.init import init_conv_bn_
from centernet.models.registry import BACKBONES

logger = logging.getLogger(__name__)

DLA34_LEVELS = (1, 1, 1, 2, 2, 1)
"""Convs in ``level0``/``level1``, then tree depths of ``level2`` .. ``level5`` (DLA-34)."""
DLA34_CHANNELS = (16, 32, 64, 128, 256, 512)
"""Output channels of ``level0`` .. ``level5`` (DLA-34)."""
DLA34_IMAGENET_URL = "http://dl.yf.io/dla/models/imagenet/dla34-ba72cf86.pth"
"""The ImageNet weights the original CenterNet starts from (DLA authors' release)."""

STEM_KERNEL = 7
DLA_STRIDE = 32
"""Stride of the last map (``level5``)."""

_CLASSIFIER_PREFIXES = ("fc.",)
WeightsArg = str | os.PathLike[str] | None


class BasicBlock(nn.Module):
    """Two 3x3 conv + BatchNorm layers with a residual connection (``residual`` defaults to the input).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: stride of the first conv.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """``relu(bn2(conv2(relu(bn1(conv1(x))))) + residual)``; FloatTensor[B, out, H / stride, W / stride]."""
        if residual is None:
            residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Root(nn.Module):
    """Aggregation node: 1x1 conv + BatchNorm + ReLU over the channel-concatenated children."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, stride=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, *children: torch.Tensor) -> torch.Tensor:
        """Fuse children FloatTensor[B, c_i, H, W] into FloatTensor[B, out_channels, H, W]."""
        return self.relu(self.bn(self.conv(torch.cat(children, dim=1))))


class Tree(nn.Module):
    """A hierarchical aggregation tree of :class:`BasicBlock` (the original ``Tree``, no dilation).

    Args:
        levels: depth; 1 = two blocks and a root.
        in_channels: input channels.
        out_channels: output channels.
        stride: downsampling of the first block (and of the max-pooled residual path).
        level_root: also feed the (downsampled) tree input to the last root.
        root_dim: input channels of the last root; 0 = ``2 * out_channels`` (the two children).
    """

    def __init__(
        self,
        levels: int,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        level_root: bool = False,
        root_dim: int = 0,
    ) -> None:
        super().__init__()
        if root_dim == 0:
            root_dim = 2 * out_channels
        if level_root:
            root_dim += in_channels
        self.levels = levels
        self.level_root = level_root
        self.tree1: nn.Module
        self.tree2: nn.Module
        if levels == 1:
            self.tree1 = BasicBlock(in_channels, out_channels, stride)
            self.tree2 = BasicBlock(out_channels, out_channels, 1)
            self.root = Root(root_dim, out_channels)
        else:
            self.tree1 = Tree(levels - 1, in_channels, out_channels, stride)
            self.tree2 = Tree(levels - 1, out_channels, out_channels, root_dim=root_dim + out_channels)
        self.downsample = nn.MaxPool2d(stride, stride=stride) if stride > 1 else nn.Identity()
        self.project: nn.Module | None = None
        if in_channels != out_channels:
            self.project = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=1, bias=False), nn.BatchNorm2d(out_channels)
            )
            if levels > 1:  # its output would be discarded (see the module docstring)
                self.project.requires_grad_(False)

    def forward(self, x: torch.Tensor, children: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Aggregate.

        Args:
            x: FloatTensor[B, in_channels, H, W].
            children: maps of enclosing trees fed to the last root (``level_root`` inputs, earlier subtrees).

        Returns:
            FloatTensor[B, out_channels, H / stride, W / stride].
        """
        children = [] if children is None else children
        bottom = self.downsample(x)
        if self.level_root:
            children.append(bottom)
        if self.levels == 1:
            residual = self.project(bottom) if self.project is not None else bottom
            x1 = self.tree1(x, residual)
            x2 = self.tree2(x1)
            return self.root(x2, x1, *children)
        x1 = self.tree1(x)
        children.append(x1)
        return self.tree2(x1, children=children)


def _conv_level(in_channels: int, out_channels: int, convs: int, stride: int = 1) -> nn.Sequential:
    """``convs`` x [3x3 conv (the first with ``stride``), BatchNorm, ReLU]."""
    modules: list[nn.Module] = []
    for index in range(convs):
        modules += [
            nn.Conv2d(in_channels, out_channels, 3, stride=stride if index == 0 else 1, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        ]
        in_channels = out_channels
    return nn.Sequential(*modules)


class DLABackbone(nn.Module):
    """The DLA trunk of CenterNet's ``DLASeg`` (no classifier).

    Args:
        levels: convs of ``level0``/``level1``, then tree depths of ``level2`` .. ``level5``.
        channels: output channels of the six levels.
        weights: ``None``, ``"imagenet"`` or a local state_dict file (see the module docstring).

    Attributes:
        out_channels: channels of the last (stride-32) map.
        stride: 32.
        feature_channels: channels of the six maps ``forward`` returns.
        feature_strides: their strides, ``(1, 2, 4, 8, 16, 32)``.
    """

    def __init__(
        self,
        levels: tuple[int, ...] = DLA34_LEVELS,
        channels: tuple[int, ...] = DLA34_CHANNELS,
        *,
        weights: WeightsArg = None,
    ) -> None:
        super().__init__()
        if len(levels) != len(DLA34_LEVELS) or len(channels) != len(DLA34_CHANNELS):
            raise ValueError(f"DLA: expected 6 levels and 6 channels, got {list(levels)} and {list(channels)}")
        self.base_layer = nn.Sequential(
            nn.Conv2d(3, channels[0], STEM_KERNEL, stride=1, padding=STEM_KERNEL // 2, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=True),
        )
        self.level0 = _conv_level(channels[0], channels[0], levels[0])
        self.level1 = _conv_level(channels[0], channels[1], levels[1], stride=2)
        self.level2 = Tree(levels[2], channels[1], channels[2], 2, level_root=False)
        self.level3 = Tree(levels[3], channels[2], channels[3], 2, level_root=True)
        self.level4 = Tree(levels[4], channels[3], channels[4], 2, level_root=True)
        self.level5 = Tree(levels[5], channels[4], channels[5], 2, level_root=True)
        self.out_channels: int = channels[-1]
        self.stride: int = DLA_STRIDE
        self.feature_channels: tuple[int, ...] = tuple(channels)
        self.feature_strides: tuple[int, ...] = tuple(2**i for i in range(len(channels)))
        init_conv_bn_(self)
        if weights is not None:
            load_dla_weights(self, weights)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Run the trunk.

        Args:
            images: FloatTensor[B, 3, H, W], normalised; H and W multiples of 32.

        Returns:
            Six maps FloatTensor[B, feature_channels[i], H / 2**i, W / 2**i], finest first.
        """
        x = self.base_layer(images)
        maps = []
        for level in (self.level0, self.level1, self.level2, self.level3, self.level4, self.level5):
            x = level(x)
            maps.append(x)
        return maps


def load_dla_weights(backbone: DLABackbone, weights: str | os.PathLike[str]) -> None:
    """Load ImageNet or local-file weights (original DLA naming; ``fc.*`` ignored) into ``backbone`` in place.

    Raises:
        RuntimeError: the ImageNet download failed (e.g. offline), or the file could not be read.
        FileNotFoundError: ``weights`` is neither ``"imagenet"`` nor an existing file.
        ValueError: the state_dict does not match (missing/unexpected keys, shapes).
    """
    if isinstance(weights, str) and weights == IMAGENET_WEIGHTS:
        try:
            state = torch.hub.load_state_dict_from_url(DLA34_IMAGENET_URL, map_location="cpu", progress=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
            filename = DLA34_IMAGENET_URL.rsplit("/", 1)[-1]
            raise RuntimeError(
                f"could not download the DLA-34 ImageNet weights from {DLA34_IMAGENET_URL} ({exc}); download "
                f"{filename} where there is internet access and set model.backbone.weights=/path/to/{filename}"
            ) from exc
        source = DLA34_IMAGENET_URL
    else:
        path = local_weights_file(weights, "a DLA-34 state_dict file")
        state = read_state_dict_file(path)
        source = str(path)
    load_state_dict_checked(backbone, state, source=source, ignore_prefixes=_CLASSIFIER_PREFIXES)
    logger.info("loaded dla34 weights from %s", source)


@BACKBONES.register("dla34")
def dla34(*, weights: WeightsArg = None) -> DLABackbone:
    """DLA-34 trunk (six maps, strides 1..32, channels 16..512); see :class:`DLABackbone`."""
    return DLABackbone(DLA34_LEVELS, DLA34_CHANNELS, weights=weights)
