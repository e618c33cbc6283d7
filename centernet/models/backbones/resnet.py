"""ResNet backbones (torchvision architectures without the classifier).

The submodules carry torchvision's names (``conv1``, ``bn1``, ``layer1`` .. ``layer4``), so a torchvision
state_dict loads as is (its ``fc.*`` keys are ignored) and the original CenterNet ``msra_resnet``
checkpoint keys map one to one onto ``backbone.<same key>``.

Weights (the ``weights`` argument of every factory):

- ``None``: random initialisation (torchvision's default: Kaiming-normal convs, BatchNorm 1 / 0);
- ``"imagenet"``: torchvision's ``ResNetXX_Weights.IMAGENET1K_V1`` (downloaded into the torch hub
  cache; offline, a ``RuntimeError`` explains how to pass a local file instead);
- a path to a local file holding a torchvision-format state_dict, or a dict with that state_dict under
  ``"state_dict"`` or ``"model"`` (a DDP ``module.`` prefix is stripped).
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm
from torchvision.models import (
    ResNet18_Weights,
    ResNet34_Weights,
    ResNet50_Weights,
    ResNet101_Weights,
    WeightsEnum,
)

from centernet.models.registry import BACKBONES

logger = logging.getLogger(__name__)

IMAGENET_WEIGHTS = "imagenet"
"""Value of ``weights`` selecting torchvision's ImageNet weights."""

RESNET_STRIDE = 32
"""Total downsampling of the ResNet trunk (stem /4, layer2..layer4 /2 each)."""

_CLASSIFIER_PREFIXES = ("fc.",)  # torchvision keys a backbone does not have
_WRAPPER_KEYS = ("state_dict", "model")  # where checkpoints usually nest the state_dict
_DDP_PREFIX = "module."
_OPTIONAL_SUFFIX = ".num_batches_tracked"  # absent from older checkpoints; the buffer keeps its value
_MAX_NAMED_KEYS = 5  # how many offending keys an error message lists

WeightsArg = str | os.PathLike[str] | None


@dataclass(frozen=True)
class _ResNetSpec:
    """How to build one ResNet depth: torchvision builder, ImageNet weights, trunk output channels."""

    builder: Callable[..., tvm.ResNet]
    imagenet: WeightsEnum
    out_channels: int


_SPECS: dict[str, _ResNetSpec] = {
    "resnet18": _ResNetSpec(tvm.resnet18, ResNet18_Weights.IMAGENET1K_V1, 512),
    "resnet34": _ResNetSpec(tvm.resnet34, ResNet34_Weights.IMAGENET1K_V1, 512),
    "resnet50": _ResNetSpec(tvm.resnet50, ResNet50_Weights.IMAGENET1K_V1, 2048),
    "resnet101": _ResNetSpec(tvm.resnet101, ResNet101_Weights.IMAGENET1K_V1, 2048),
}


def _first_line(exc: BaseException) -> str:
    """First line of an exception message (keeps our own error messages on one line)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _some(keys: list[str]) -> str:
    """Up to ``_MAX_NAMED_KEYS`` keys joined for an error message, with a count of the rest."""
    shown = ", ".join(keys[:_MAX_NAMED_KEYS])
    rest = len(keys) - _MAX_NAMED_KEYS
    return f"{shown}, ... ({rest} more)" if rest > 0 else shown


class ResNetBackbone(nn.Module):
    """A torchvision ResNet trunk: stem and ``layer1`` .. ``layer4``, no pooling or classifier.

    Args:
        arch: ``"resnet18"``, ``"resnet34"``, ``"resnet50"`` or ``"resnet101"``.
        weights: ``None``, ``"imagenet"`` or a local state_dict file (see the module docstring).

    Attributes:
        out_channels: channels of the last (stride-32) map (512 for ResNet-18/34, 2048 for ResNet-50/101).
        stride: total downsampling factor (32).
        feature_channels: channels of the maps ``forward`` returns (strides 4, 8, 16, 32).
        feature_strides: their strides, ``(4, 8, 16, 32)``.
    """

    def __init__(self, arch: str, *, weights: WeightsArg = None) -> None:
        super().__init__()
        if arch not in _SPECS:
            raise ValueError(f"unknown ResNet architecture {arch!r}: valid are {', '.join(_SPECS)}")
        spec = _SPECS[arch]
        net = spec.builder(weights=None)
        self.arch = arch
        self.out_channels: int = spec.out_channels
        self.stride: int = RESNET_STRIDE
        self.conv1 = net.conv1
        self.bn1 = net.bn1
        self.relu = net.relu
        self.maxpool = net.maxpool
        self.layer1 = net.layer1
        self.layer2 = net.layer2
        self.layer3 = net.layer3
        self.layer4 = net.layer4
        self.feature_channels: tuple[int, ...] = tuple(
            _block_out_channels(layer) for layer in (self.layer1, self.layer2, self.layer3, self.layer4)
        )
        self.feature_strides: tuple[int, ...] = (4, 8, 16, 32)
        if weights is not None:
            load_resnet_weights(self, weights)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Run the trunk.

        Args:
            images: FloatTensor[B, 3, H, W], normalised.

        Returns:
            The outputs of ``layer1`` .. ``layer4``: FloatTensor[B, feature_channels[i], H / s, W / s] for
            ``s`` in 4, 8, 16, 32 (sizes rounded up at each stride-2 step); the last is the usual trunk output.
        """
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))  # [B, 64, H/4, W/4]
        c2 = self.layer1(x)  # [B, ., H/4, W/4]
        c3 = self.layer2(c2)  # [B, ., H/8, W/8]
        c4 = self.layer3(c3)  # [B, ., H/16, W/16]
        return [c2, c3, c4, self.layer4(c4)]  # last: [B, out_channels, H/32, W/32]


def _block_out_channels(layer: nn.Sequential) -> int:
    """Output channels of a torchvision ResNet stage (its last block's last BatchNorm)."""
    norms = [m for m in layer[-1].modules() if isinstance(m, nn.BatchNorm2d)]
    return int(norms[-1].num_features)


def load_resnet_weights(backbone: ResNetBackbone, weights: str | os.PathLike[str]) -> None:
    """Load ImageNet or local-file weights into ``backbone`` in place.

    Args:
        backbone: the module to fill.
        weights: ``"imagenet"`` or a path to a local state_dict file.

    Raises:
        RuntimeError: the ImageNet download failed (e.g. offline), or the file could not be read.
        FileNotFoundError: ``weights`` is neither ``"imagenet"`` nor an existing file.
        ValueError: the state_dict does not match the architecture (missing/unexpected keys, shapes).
    """
    spec = _SPECS[backbone.arch]
    if isinstance(weights, str) and weights == IMAGENET_WEIGHTS:
        state = _download_imagenet(backbone.arch, spec.imagenet)
        source = f"{spec.imagenet} ({spec.imagenet.url})"
    else:
        path = local_weights_file(weights, "a torchvision-format state_dict file")
        state = read_state_dict_file(path)
        source = str(path)
    load_state_dict_checked(backbone, state, source=source, ignore_prefixes=_CLASSIFIER_PREFIXES)
    logger.info("loaded %s weights from %s", backbone.arch, source)


def _download_imagenet(arch: str, weights: WeightsEnum) -> dict[str, torch.Tensor]:
    """Fetch torchvision's ImageNet state_dict (torch hub cache first), with a clear offline error."""
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        filename = weights.url.rsplit("/", 1)[-1]
        raise RuntimeError(
            f"could not download the ImageNet weights for {arch} ({weights}) from {weights.url} "
            f"({_first_line(exc)}); download {filename} where there is internet access and pass the "
            f"local file instead: backbone weights=/path/to/{filename} "
            f"(config: model.backbone.weights=/path/to/{filename})"
        ) from exc


def local_weights_file(weights: str | os.PathLike[str], expected: str) -> Path:
    """The path of a local ``model.backbone.weights`` file.

    Raises:
        FileNotFoundError: no such file (the message says what ``weights`` may be, with ``expected`` as the file kind).
    """
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"backbone weights file {path} does not exist: expected None, {IMAGENET_WEIGHTS!r} "
            f"or the path to {expected}"
        )
    return path


def read_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state_dict from a ``torch.save`` file, unwrapping ``"state_dict"`` / ``"model"``.

    Args:
        path: the file; it holds either ``{key: Tensor}`` or a dict with such a mapping under
            ``"state_dict"`` or ``"model"`` (e.g. a training checkpoint).

    Returns:
        ``{key: Tensor}`` with a leading DDP ``module.`` prefix removed from every key that has it.

    Raises:
        RuntimeError: the file cannot be unpickled with ``weights_only=True``.
        ValueError: the file does not hold a state_dict.
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise RuntimeError(f"could not read weights file {path}: {_first_line(exc)}") from exc
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"weights file {path}: expected a non-empty state_dict (dict of tensors)")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(
                f"weights file {path}: entry {key!r} is a {type(value).__name__}, expected a tensor "
                f"(a state_dict, or a dict holding one under {' or '.join(map(repr, _WRAPPER_KEYS))})"
            )
        state[key.removeprefix(_DDP_PREFIX)] = value
    return state


def load_state_dict_checked(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str,
    ignore_prefixes: tuple[str, ...] = (),
) -> None:
    """Load ``state`` into ``module``, failing with a one-line error that names offending keys.

    Keys starting with one of ``ignore_prefixes`` are dropped; a missing ``*.num_batches_tracked``
    buffer is tolerated (older checkpoints lack it). Every other key must match by name and shape.

    Args:
        module: the module to fill in place.
        state: ``{key: Tensor}`` in ``module``'s naming.
        source: where ``state`` came from (file or URL), for error messages.
        ignore_prefixes: key prefixes to drop before matching (e.g. ``("fc.",)``).

    Raises:
        ValueError: on missing or unexpected keys, or shape mismatches.
    """
    wanted = dict(state)
    for key in list(wanted):
        if key.startswith(ignore_prefixes):
            del wanted[key]
    expected = module.state_dict()
    missing = [k for k in expected if k not in wanted and not k.endswith(_OPTIONAL_SUFFIX)]
    unexpected = [k for k in wanted if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_some(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_some(unexpected)})")
        raise ValueError(f"weights from {source} do not match {type(module).__name__}: {'; '.join(parts)}")
    for key, value in wanted.items():
        if value.shape != expected[key].shape:
            raise ValueError(
                f"weights from {source}: {key!r} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}"
            )
    module.load_state_dict(wanted, strict=False)


@BACKBONES.register("resnet18")
def resnet18(*, weights: WeightsArg = None) -> ResNetBackbone:
    """ResNet-18 trunk (``out_channels`` 512, stride 32); see :class:`ResNetBackbone`."""
    return ResNetBackbone("resnet18", weights=weights)


@BACKBONES.register("resnet34")
def resnet34(*, weights: WeightsArg = None) -> ResNetBackbone:
    """ResNet-34 trunk (``out_channels`` 512, stride 32); see :class:`ResNetBackbone`."""
    return ResNetBackbone("resnet34", weights=weights)


@BACKBONES.register("resnet50")
def resnet50(*, weights: WeightsArg = None) -> ResNetBackbone:
    """ResNet-50 trunk (``out_channels`` 2048, stride 32); see :class:`ResNetBackbone`."""
    return ResNetBackbone("resnet50", weights=weights)


@BACKBONES.register("resnet101")
def resnet101(*, weights: WeightsArg = None) -> ResNetBackbone:
    """ResNet-101 trunk (``out_channels`` 2048, stride 32); see :class:`ResNetBackbone`."""
    return ResNetBackbone("resnet101", weights=weights)
