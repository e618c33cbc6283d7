"""The shared backbone initialisation: He-normal convs (fan_out), BatchNorm 1/0, other modules untouched."""

from __future__ import annotations

import math

import torch
from torch import nn

from centernet.models.init import init_conv_bn_


def test_conv_std_follows_fan_out_and_batchnorm_is_reset() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 256, 3, bias=False), nn.BatchNorm2d(256), nn.Linear(3, 5))
    nn.init.uniform_(model[1].weight, 2, 3)
    nn.init.uniform_(model[1].bias, 2, 3)
    linear_before = model[2].weight.detach().clone()
    init_conv_bn_(model)
    expected_std = math.sqrt(2.0 / (256 * 3 * 3))  # gain sqrt(2) for ReLU over fan_out = out_channels * k * k
    assert abs(model[0].weight.std().item() / expected_std - 1) < 0.05  # 9,216 samples: ~1% sampling error
    assert abs(model[0].weight.mean().item()) < 3 * expected_std / math.sqrt(model[0].weight.numel())
    assert torch.equal(model[1].weight, torch.ones(256)) and torch.equal(model[1].bias, torch.zeros(256))
    assert torch.equal(model[2].weight, linear_before)


def test_empty_module_is_a_no_op() -> None:
    init_conv_bn_(nn.Sequential())  # nothing to initialise, no error
