"""The CenterNet detector (backbone -> neck -> head) and its builder.

The model only maps images to raw maps; targets, losses and decoding live elsewhere (``docs/architecture.md``).
``forward`` returns the same dict in train and eval mode. ``channels_last`` is supported: convert the
model and the input with ``.to(memory_format=torch.channels_last)``; the output maps may then be
channels_last too (read them with ``reshape``/indexing, not ``view``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from centernet.models.heads import LTRB_SCALE, CenterNetHead
from centernet.models.registry import BACKBONES, NECKS


def component_int(module: nn.Module, name: str, role: str) -> int:
    """Read the integer attribute ``name`` a component must expose (e.g. a backbone's ``stride``).

    Args:
        module: the component.
        name: attribute name (``out_channels``, ``stride``, ``upsample_factor``).
        role: ``"backbone"`` or ``"neck"``, for the error message.

    Returns:
        The attribute value.

    Raises:
        TypeError: if the attribute is missing or not a positive int.
    """
    value = getattr(module, name, None)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise TypeError(
            f"CenterNet: the {role} ({type(module).__name__}) must expose a positive int attribute "
            f"{name!r}, got {value!r}"
        )
    return value


class CenterNet(nn.Module):
    """Objects-as-points detector.

    Args:
        backbone: exposes ``out_channels: int`` and ``stride: int``; maps FloatTensor[B, 3, H, W] to
            FloatTensor[B, out_channels, H / stride, W / stride]. Optional: ``size_divisor: int`` (default
            ``stride``) and ``num_stacks: int`` (default 1; a stacked backbone such as the hourglass returns
            one map per stack as its last ``num_stacks`` maps).
        neck: exposes ``out_channels: int`` and ``upsample_factor: int``; upsamples the backbone map.
        head: maps the neck output to ``{"heatmap", "size", "offset"}`` maps (or ``{"heatmap", "ltrb"}``,
            see :class:`CenterNetHead`); for a stacked backbone an ``nn.ModuleList`` of ``num_stacks`` such heads.

    Attributes:
        output_stride: ``backbone.stride / neck.upsample_factor`` (4 for ResNet + 3-layer deconv): input
            pixels per output-map pixel.
        size_divisor: ``backbone.size_divisor`` (default ``backbone.stride``); input height and width must
            be multiples of it.
        num_stacks: 1, or the number of stacks of a stacked backbone.

    Raises:
        TypeError: if the backbone or neck lacks one of the int attributes above.
        ValueError: if the backbone stride is not a multiple of the neck's upsampling factor, the
            neck's ``in_channels`` (when it has one) differs from the backbone's ``out_channels``, or the
            number of heads differs from the backbone's ``num_stacks``.
    """

    def __init__(self, backbone: nn.Module, neck: nn.Module, head: nn.Module) -> None:
        super().__init__()
        stride = component_int(backbone, "stride", "backbone")
        upsample = component_int(neck, "upsample_factor", "neck")
        backbone_channels = component_int(backbone, "out_channels", "backbone")
        if stride % upsample != 0:
            raise ValueError(
                f"CenterNet: backbone stride {stride} is not a multiple of the neck upsample factor "
                f"{upsample}; the output stride must be a whole number of input pixels"
            )
        neck_in = getattr(neck, "in_channels", None)
        if neck_in is not None and neck_in != backbone_channels:
            raise ValueError(f"CenterNet: neck expects {neck_in} input channels, backbone gives {backbone_channels}")
        num_stacks = component_int(backbone, "num_stacks", "backbone") if hasattr(backbone, "num_stacks") else 1
        num_heads = len(head) if isinstance(head, nn.ModuleList) else 1
        if num_heads != num_stacks:
            raise ValueError(f"CenterNet: the backbone has {num_stacks} stacks but {num_heads} heads were given")
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.num_stacks: int = num_stacks
        self.output_stride: int = stride // upsample
        self.size_divisor: int = (
            component_int(backbone, "size_divisor", "backbone") if hasattr(backbone, "size_divisor") else stride
        )

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        """Predict the raw maps (the same dict in train and eval mode, except for a stacked backbone).

        With ``num_stacks > 1`` the model returns, in training mode, a list with one such dict per stack
        (first stack first; the criterion averages the loss over them: intermediate supervision), and in
        eval mode the dict of the last stack only.

        Args:
            images: FloatTensor[B, 3, H, W], normalised; H and W multiples of ``size_divisor`` (32 for ResNet
                and DLA, 128 for the hourglass).

        Returns:
            ``{"heatmap": FloatTensor[B, C, H/s, W/s] logits (no sigmoid), "size": FloatTensor[B, 2, H/s,
            W/s] box (w, h) in output pixels, "offset": FloatTensor[B, 2, H/s, W/s] (dx, dy)}`` with
            ``s = output_stride``; with an ``ltrb`` head ``{"heatmap": ..., "ltrb": FloatTensor[B, 4, H/s,
            W/s]}`` distances from the cell ``(x * s, y * s)`` to the box sides, in input pixels.

        Raises:
            ValueError: if ``images`` is not 4-D or H, W are not multiples of ``size_divisor``.
        """
        if images.dim() != 4:
            raise ValueError(f"CenterNet: expected images [B, 3, H, W], got shape {tuple(images.shape)}")
        height, width = images.shape[-2:]
        if height % self.size_divisor or width % self.size_divisor:
            raise ValueError(
                f"CenterNet: input height {height} and width {width} must be multiples of "
                f"{self.size_divisor} (the backbone's size divisor); pad or resize the input"
            )
        features = self.backbone(images)
        if self.num_stacks == 1:
            return self.head(self.neck(features))
        stack_maps = features[-self.num_stacks :]  # one [B, C, H/s, W/s] map per stack
        heads = cast(nn.ModuleList, self.head)
        if not self.training:
            return heads[-1](self.neck([stack_maps[-1]]))
        return [head(self.neck([stack_map])) for head, stack_map in zip(heads, stack_maps, strict=True)]


def build_centernet(
    *,
    backbone: str,
    backbone_weights: str | None,
    neck: str,
    neck_channels: Sequence[int],
    num_classes: int,
    head_conv: int,
    prior_prob: float,
    box: str = "size_offset",
    ltrb_scale: float = LTRB_SCALE,
) -> CenterNet:
    """Build a CenterNet from registered component names and explicit hyper-parameters.

    Args:
        backbone: a name in ``BACKBONES`` (e.g. ``"resnet18"``).
        backbone_weights: ``None`` (random init), ``"imagenet"`` or a local state_dict file.
        neck: a name in ``NECKS`` (e.g. ``"deconv"``).
        neck_channels: output channels of each neck layer (e.g. ``[256, 256, 256]``).
        num_classes: heatmap channels.
        head_conv: hidden channels of each head branch (``<= 0``: single 1x1 conv).
        prior_prob: initial heatmap foreground probability, in (0, 1).
        box: the head's box branch: ``size_offset`` (CenterNet) or ``ltrb`` (TTFNet).
        ltrb_scale: input pixels per unit of the rectified ``ltrb`` output (TTFNet's 16).

    Returns:
        The detector (in training mode, on the CPU); with a stacked backbone (``num_stacks > 1``), one head
        per stack in an ``nn.ModuleList``.

    Raises:
        KeyError: (``UnknownNameError``) for an unknown backbone or neck name, listing the valid ones.
    """
    backbone_module = BACKBONES[backbone](weights=backbone_weights)
    feature_channels = tuple(int(c) for c in cast(Sequence[int], backbone_module.feature_channels))
    neck_module = NECKS[neck](feature_channels=feature_channels, channels=neck_channels)
    neck_channels_out = component_int(neck_module, "out_channels", "neck")
    num_stacks = int(getattr(backbone_module, "num_stacks", 1))
    heads = [
        CenterNetHead(
            neck_channels_out, num_classes, head_conv=head_conv, prior_prob=prior_prob, box=box, ltrb_scale=ltrb_scale
        )
        for _ in range(num_stacks)
    ]
    head_module: nn.Module = heads[0] if num_stacks == 1 else nn.ModuleList(heads)
    return CenterNet(backbone_module, neck_module, head_module)
