"""Fold inference-mode BatchNorm layers into the convolution that feeds them (a faster, equal model).

In eval mode a BatchNorm is the per-channel affine map ``y * s + (beta - mean * s)`` with
``s = gamma / sqrt(var + eps)``. When its input is the output of a convolution and nothing else reads
that output, the map can be moved into the convolution: ``W' = W * s`` (per output channel) and
``b' = (b - mean) * s + beta``; the BatchNorm is then replaced by ``nn.Identity``. One pass over every
BatchNorm'd activation (and its memory traffic) disappears.

Which BatchNorm follows which convolution is found by running the model once on an example input
while recording, for every convolution output, which operations read it: a pair is folded only when
every read of the convolution's output happens inside the BatchNorm that received it (so a residual
branch or a second consumer keeps its BatchNorm). This works for any architecture without tracing
its code.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten
from torchvision.ops import FrozenBatchNorm2d

from centernet.models.dcn import DeformConv

FOLDABLE_CONVS = (nn.Conv2d, nn.ConvTranspose2d, DeformConv)
FOLDABLE_NORMS = (nn.BatchNorm2d, FrozenBatchNorm2d)
DEFAULT_EXAMPLE_SIDE = 64  # example input side when none is given (rounded up to the model's size divisor)


class _ReadRecorder(TorchFunctionMode):
    """Records, for tracked tensors, the BatchNorm module (or None) active at each operation that reads them."""

    def __init__(self) -> None:
        super().__init__()
        self.tracked: dict[int, Tensor] = {}  # id -> tensor (kept alive so that ids stay unique)
        self.reads: dict[int, list[nn.Module | None]] = {}
        self.active_norm: nn.Module | None = None

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        for value in tree_flatten((args, kwargs))[0]:
            if isinstance(value, Tensor) and id(value) in self.tracked:
                self.reads[id(value)].append(self.active_norm)
        return func(*args, **kwargs)


def _norm_scale_shift(norm: nn.Module) -> tuple[Tensor, Tensor] | None:
    """``(s, shift)`` in float64 such that ``norm(y) = y * s + shift``; None if it is not a fixed affine map."""
    if isinstance(norm, nn.BatchNorm2d):
        if norm.training or norm.running_mean is None or norm.running_var is None:
            return None
        mean, var = norm.running_mean.double(), norm.running_var.double()
        gamma = norm.weight.double() if norm.weight is not None else torch.ones_like(mean)
        beta = norm.bias.double() if norm.bias is not None else torch.zeros_like(mean)
    elif isinstance(norm, FrozenBatchNorm2d):
        mean, var = norm.running_mean.double(), norm.running_var.double()
        gamma, beta = norm.weight.double(), norm.bias.double()
    else:
        return None
    scale = gamma / torch.sqrt(var + norm.eps)
    return scale, beta - mean * scale


def _fold_pair(conv: nn.Module, norm: nn.Module) -> bool:
    """Move ``norm``'s affine map into ``conv``'s weight and bias; False (nothing changed) if it cannot."""
    affine = _norm_scale_shift(norm)
    weight = getattr(conv, "weight", None)
    if affine is None or not isinstance(weight, Tensor):
        return False
    scale, shift = affine
    out_channels = scale.numel()
    with torch.no_grad():
        w = weight.double()
        if isinstance(conv, nn.ConvTranspose2d):  # [in, out / groups, kh, kw]
            groups = conv.groups
            w = w.view(groups, w.shape[0] // groups, out_channels // groups, *w.shape[2:])
            w = w * scale.view(groups, 1, out_channels // groups, 1, 1)
            new_weight = w.view_as(weight)
        else:  # [out, in / groups, kh, kw]
            new_weight = w * scale.view(-1, *([1] * (w.dim() - 1)))
        bias = conv.bias if isinstance(conv.bias, Tensor) else None
        old_bias = bias.double() if bias is not None else torch.zeros_like(scale)
        new_bias = old_bias * scale + shift
        weight.copy_(new_weight.to(weight.dtype))
        if bias is not None:
            bias.copy_(new_bias.to(bias.dtype))
        else:
            conv.bias = nn.Parameter(new_bias.to(dtype=weight.dtype, device=weight.device))
    return True


def _example_input(model: nn.Module) -> Tensor:
    """A zero ``[1, 3, S, S]`` image on the model's device, ``S`` a multiple of its ``size_divisor``."""
    divisor = int(getattr(model, "size_divisor", 32))
    side = -(-DEFAULT_EXAMPLE_SIDE // divisor) * divisor
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    return torch.zeros(1, 3, side, side, device=device, dtype=dtype)


def fold_batch_norm_(model: nn.Module, example: Tensor | None = None) -> int:
    """Fold every eval-mode BatchNorm fed only by a convolution into that convolution, in place.

    The model must be in eval mode (BatchNorm layers in training mode are left alone). Afterwards the
    model computes the same outputs (to float rounding) with fewer layers; its ``state_dict`` keys
    change (the folded BatchNorms are gone, their convolutions may gain a ``bias``), so fold a model
    after loading its weights, for inference only.

    Args:
        model: the network (``nn.Conv2d``, ``nn.ConvTranspose2d`` and :class:`DeformConv` layers
            followed by ``nn.BatchNorm2d`` or ``FrozenBatchNorm2d``).
        example: an input the model accepts, run once to find the pairs; default a zero image
            ``[1, 3, S, S]`` with ``S`` the smallest multiple of ``model.size_divisor`` (or 32) >= 64.

    Returns:
        The number of BatchNorm layers folded.
    """
    example = _example_input(model) if example is None else example
    recorder = _ReadRecorder()
    producers: dict[int, nn.Module] = {}  # conv output id -> conv
    calls: dict[nn.Module, int] = {}  # how often each conv / norm ran
    pairs: list[tuple[int, nn.Module]] = []  # (id of a norm's input, norm)
    handles = []

    def after_conv(module: nn.Module, _args: Any, output: Any) -> None:
        calls[module] = calls.get(module, 0) + 1
        if isinstance(output, Tensor):
            recorder.tracked[id(output)] = output
            recorder.reads[id(output)] = []
            producers[id(output)] = module

    def before_norm(module: nn.Module, args: Any) -> None:
        calls[module] = calls.get(module, 0) + 1
        if args and isinstance(args[0], Tensor):
            pairs.append((id(args[0]), module))
        recorder.active_norm = module

    def after_norm(_module: nn.Module, _args: Any, _output: Any) -> None:
        recorder.active_norm = None

    for module in model.modules():
        if isinstance(module, FOLDABLE_CONVS):
            handles.append(module.register_forward_hook(after_conv))
        elif isinstance(module, FOLDABLE_NORMS):
            handles.append(module.register_forward_pre_hook(before_norm))
            handles.append(module.register_forward_hook(after_norm))
    try:
        with torch.no_grad(), recorder:
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    parents = {child: (parent, name) for parent in model.modules() for name, child in parent.named_children()}
    folded = 0
    for tensor_id, norm in pairs:
        conv = producers.get(tensor_id)
        reads = recorder.reads.get(tensor_id, [])
        if conv is None or calls[conv] != 1 or calls[norm] != 1:  # a layer run twice is shared: keep it
            continue
        if not reads or any(active is not norm for active in reads):  # another operation reads the output
            continue
        if norm in parents and _fold_pair(conv, norm):
            parent, name = parents[norm]
            setattr(parent, name, nn.Identity())
            folded += 1
    return folded
