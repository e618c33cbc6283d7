"""Weight initialisation shared by the backbones trained from scratch."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d


def init_conv_bn_(root: nn.Module) -> None:
    """He-normal (fan_out, ReLU gain) for every ``Conv2d`` under ``root``, BatchNorm weight 1 and bias 0.

    Other modules (linear layers, deformable convs with their own reset) are left untouched.
    """
    for module in root.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def freeze_batch_norm_(root: nn.Module) -> int:
    """Replace every ``BatchNorm2d`` under ``root`` by a ``FrozenBatchNorm2d`` holding its current statistics.

    The frozen layer applies ``(x - running_mean) / sqrt(running_var + eps) * weight + bias`` with all four
    as buffers: no statistics update and no affine training (the usual practice for pretrained detection
    backbones trained at small batch sizes).

    Returns:
        The number of layers replaced.
    """
    replaced = 0
    for name, child in root.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                if child.affine:
                    frozen.weight.copy_(child.weight)
                    frozen.bias.copy_(child.bias)
                if child.running_mean is not None and child.running_var is not None:
                    frozen.running_mean.copy_(child.running_mean)
                    frozen.running_var.copy_(child.running_var)
            setattr(root, name, frozen.to(child.running_mean.device if child.running_mean is not None else "cpu"))
            replaced += 1
        else:
            replaced += freeze_batch_norm_(child)
    return replaced
