"""BatchNorm over the global batch of a DDP job (``runtime.sync_bn``), on CUDA and on CPU.

On CUDA :class:`torch.nn.SyncBatchNorm` does this with fused kernels, but it refuses CPU tensors.
:class:`GlobalBatchNorm2d` is the plain-PyTorch equivalent used on CPU (Gloo): per-channel sums and
sums of squares are all-reduced through a differentiable all-reduce (:class:`AllReduceSum`), so
the forward pass normalises with the statistics of the whole global batch and the backward pass
carries the gradient through those statistics to every rank.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from centernet.engine.distributed import is_distributed

_CHANNEL_DIM = 1
_REDUCE_DIMS = (0, 2, 3)  # [B, C, H, W]: statistics per channel


class AllReduceSum(torch.autograd.Function):
    """Differentiable all-reduce (sum): the gradient of every rank's input is the sum of the ranks'
    output gradients (each rank's loss depends on every rank's input through the sum)."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        reduced = tensor.clone()
        dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
        return reduced

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        reduced = grad.clone()
        dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
        return reduced


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training statistics are those of the batches of all ranks together.

    Parameters, buffers and state-dict keys are those of ``nn.BatchNorm2d`` (checkpoints stay
    interchangeable). Outside training, or without a process group, it is ``nn.BatchNorm2d``.
    """

    def forward(self, input: Tensor) -> Tensor:
        """Args: input ``[B, C, H, W]``. Returns the normalised tensor of the same shape and dtype."""
        if not (self.training and is_distributed()):
            return super().forward(input)
        x = input.float()
        channels = x.shape[_CHANNEL_DIM]
        count = torch.full((1,), x.numel() / channels, dtype=torch.float32, device=x.device)
        stats = torch.cat([x.sum(_REDUCE_DIMS), (x * x).sum(_REDUCE_DIMS), count])  # [2C + 1]
        stats = AllReduceSum.apply(stats)
        total = stats[-1]
        mean = stats[:channels] / total  # [C]
        var = (stats[channels : 2 * channels] / total - mean * mean).clamp_min(0.0)  # biased, [C]
        with torch.no_grad():
            self._update_running_stats(mean.detach(), var.detach(), total.detach())
        shape = (1, channels, 1, 1)
        scale = torch.rsqrt(var + self.eps)
        out = (x - mean.view(shape)) * scale.view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)

    def _update_running_stats(self, mean: Tensor, var: Tensor, total: Tensor) -> None:
        """Running mean / unbiased variance, updated as ``nn.BatchNorm2d`` does."""
        if not self.track_running_stats or self.running_mean is None or self.running_var is None:
            return
        assert self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * total / (total - 1).clamp_min(1.0)
        self.running_mean.mul_(1 - momentum).add_(mean * momentum)
        self.running_var.mul_(1 - momentum).add_(unbiased * momentum)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Replace every ``BatchNorm2d`` of ``model`` by a global-batch version (in place where possible).

    Args:
        model: the model (its weights and running statistics are kept).
        device: CUDA uses :class:`torch.nn.SyncBatchNorm`; other devices :class:`GlobalBatchNorm2d`.

    Returns:
        The converted model.
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert_to_global(model)


def _convert_to_global(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, GlobalBatchNorm2d):
        converted = GlobalBatchNorm2d(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        ).to(device=module.weight.device if module.affine else None)
        converted.load_state_dict(module.state_dict())
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        module.add_module(name, _convert_to_global(child))
    return module
