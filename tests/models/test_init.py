"""The shared backbone initialisation: He-normal convs (fan_out), BatchNorm 1/0, other modules untouched."""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from centernet.models.init import freeze_batch_norm_, init_conv_bn_


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


def test_frozen_batch_norm_computes_the_eval_mode_batch_norm_and_stops_learning() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.BatchNorm2d(4, eps=1e-3), nn.ReLU()))
    norm = model[1][0]
    with torch.no_grad():
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    images = torch.randn(2, 3, 8, 8)
    expected = model.eval()(images)
    assert freeze_batch_norm_(model) == 1
    assert isinstance(model[1][0], FrozenBatchNorm2d)
    model.train()  # a frozen layer ignores train mode: no batch statistics, no running-stat update
    assert torch.allclose(model(images), expected, atol=1e-6)
    assert torch.allclose(model(images * 3), model.eval()(images * 3), atol=1e-6)
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias"]  # affine is not trained
    assert freeze_batch_norm_(model) == 0  # idempotent
