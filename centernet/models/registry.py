"""The model component registries (backbones, necks) and the contracts of their factories.

Both are :class:`centernet.utils.registry.Registry` instances (a name -> factory ``dict`` with a
``register`` decorator and did-you-mean errors).

Factory contracts (what :func:`centernet.models.detector.build_centernet` relies on):

- ``BACKBONES[name](*, weights: str | None) -> nn.Module``: ``forward(images FloatTensor[B, 3, H, W])
  -> list[FloatTensor]`` of feature maps, finest first, the last ``[B, out_channels, H / stride, W / stride]``;
  the module exposes ``out_channels: int``, ``stride: int`` and ``feature_channels: tuple[int, ...]``, and
  optionally ``size_divisor: int`` (input sides must be multiples of it; default ``stride``) and
  ``num_stacks: int`` (a stacked backbone such as the hourglass: its last ``num_stacks`` maps are one per
  stack, each gets the neck and its own head; default 1).
- ``NECKS[name](*, feature_channels: Sequence[int], channels: Sequence[int]) -> nn.Module``:
  ``forward(features: list[FloatTensor]) -> FloatTensor[B, out_channels, h * f, w * f]`` where ``h, w`` is
  the size of the last map and ``f = upsample_factor``; the module exposes ``out_channels: int`` and
  ``upsample_factor: int``.

Registering a new backbone or neck: decorate its factory with ``@BACKBONES.register("name")`` in a module
that ``centernet.models`` imports (``centernet/models/backbones/__init__.py`` for backbones).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from centernet.utils.registry import Registry

BACKBONES: Registry[Callable[..., nn.Module]] = Registry("backbone")
NECKS: Registry[Callable[..., nn.Module]] = Registry("neck")
