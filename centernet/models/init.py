"""Weight initialisation shared by the backbones trained from scratch."""

from __future__ import annotations

from torch import nn


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
