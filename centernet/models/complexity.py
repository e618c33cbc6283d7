"""Model complexity: parameter counts and FLOPs of one inference pass, in total and per part.

FLOPs are counted with :class:`torch.utils.flop_counter.FlopCounterMode`, which counts **a multiply-add as
2 FLOPs** and covers convolutions (plain, grouped and transposed) and matrix multiplies; BatchNorm,
activations, pooling, upsampling and element-wise sums are not counted (they are a small fraction for these
models). The modulated deformable convolution (``torchvision::deform_conv2d``) is added with the same rule
as a dense convolution of its kernel, ``2 * B * C_out * (C_in / groups) * kh * kw * H_out * W_out``; its
bilinear sampling and mask multiply are not counted. The prediction of its offsets and mask is an ordinary
convolution and is counted.

The model is measured in eval mode (for a stacked hourglass only the last stack's head runs, as at
inference) with a zero input ``[1, 3, H, W]`` on the model's device; a model on the ``meta`` device is
measured without computing anything (build it under ``with torch.device("meta"):``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torchvision.ops  # noqa: F401  (registers torch.ops.torchvision.deform_conv2d)
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from centernet.models.detector import CenterNet
from centernet.models.heads import CenterNetHead

FLOPS_PER_MULTIPLY_ADD = 2


def _deform_conv2d_flops(
    input_shape: Sequence[int], weight_shape: Sequence[int], *args: Any, out_shape: Sequence[int], **kwargs: Any
) -> int:
    """FLOPs of ``torchvision::deform_conv2d`` (shapes only): a dense conv of the same kernel, 2 per multiply-add."""
    out_channels, in_per_group, kernel_h, kernel_w = (int(s) for s in weight_shape)
    batch, _, out_h, out_w = (int(s) for s in out_shape)
    return FLOPS_PER_MULTIPLY_ADD * batch * out_channels * in_per_group * kernel_h * kernel_w * out_h * out_w


CUSTOM_FLOP_FORMULAS = {torch.ops.torchvision.deform_conv2d: _deform_conv2d_flops}
"""Formulas for operators FlopCounterMode does not know."""


def count_parameters(module: nn.Module) -> int:
    """Number of parameter elements of ``module`` (trainable or not)."""
    return sum(p.numel() for p in module.parameters())


def count_flops(module: nn.Module, inputs: torch.Tensor) -> tuple[int, dict[str, int]]:
    """FLOPs (2 per multiply-add) of ``module(inputs)``, in total and per submodule.

    Args:
        module: the module, run as it is (train or eval mode) under ``torch.no_grad``.
        inputs: its input tensor (on the module's device, which may be ``meta``).

    Returns:
        ``(total, per_module)`` where ``per_module`` maps a dotted submodule path relative to ``module``
        (``""`` for ``module`` itself, e.g. ``"backbone.layer1"``) to the FLOPs inside it.
    """
    counter = FlopCounterMode(display=False, custom_mapping=CUSTOM_FLOP_FORMULAS)
    with counter, torch.no_grad():
        module(inputs)
    root = type(module).__name__
    per_module: dict[str, int] = {}
    for name, counts in counter.get_flop_counts().items():
        if name == root or name.startswith(root + "."):
            per_module[name[len(root) + 1 :]] = int(sum(counts.values()))
    return int(counter.get_total_flops()), per_module


@dataclass(frozen=True)
class PartComplexity:
    """Cost of one part of the detector.

    Attributes:
        name: ``"backbone"``, ``"neck"`` or a head branch (``"head.heatmap"``, ``"head.1.size"`` per stack).
        parameters: its parameter elements.
        flops: its FLOPs in one inference pass (0 for heads of earlier hourglass stacks).
    """

    name: str
    parameters: int
    flops: int


@dataclass(frozen=True)
class ModelComplexity:
    """Complexity of a :class:`CenterNet` at one input size.

    Attributes:
        input_size: ``(height, width)`` of the measured input.
        parameters: all parameter elements.
        flops: FLOPs of one inference pass on one image (2 per multiply-add).
        output_stride: input pixels per output-map pixel.
        parts: backbone, neck and every head branch; their parameters and FLOPs add up to the totals.
    """

    input_size: tuple[int, int]
    parameters: int
    flops: int
    output_stride: int
    parts: tuple[PartComplexity, ...]


def _part_names(model: CenterNet) -> list[tuple[str, nn.Module]]:
    """``backbone``, ``neck`` and each branch of each head (``head.heatmap`` or ``head.<stack>.heatmap``)."""
    parts: list[tuple[str, nn.Module]] = [("backbone", model.backbone), ("neck", model.neck)]
    for head_name, head in model.head.named_modules(prefix="head"):
        if isinstance(head, CenterNetHead):
            parts += [(f"{head_name}.{name}", branch) for name, branch in head.named_children()]
    return parts


def measure_complexity(model: CenterNet, input_size: Sequence[int]) -> ModelComplexity:
    """Parameters and inference FLOPs of ``model`` for one ``input_size`` image (see the module docstring).

    Args:
        model: the detector; it is put in eval mode for the measurement and restored afterwards.
        input_size: ``(height, width)``, multiples of ``model.size_divisor``.

    Returns:
        A :class:`ModelComplexity`.

    Raises:
        ValueError: if ``input_size`` is not two positive ints (or not a multiple of the size divisor).
    """
    size = tuple(int(s) for s in input_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"measure_complexity: input_size must be (height, width), got {list(input_size)}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        total, per_module = count_flops(model, torch.zeros(1, 3, *size, device=device))
    finally:
        model.train(was_training)
    parts = tuple(
        PartComplexity(name, count_parameters(module), per_module.get(name, 0)) for name, module in _part_names(model)
    )
    return ModelComplexity(
        input_size=(size[0], size[1]),
        parameters=count_parameters(model),
        flops=total,
        output_stride=model.output_stride,
        parts=parts,
    )
