"""fold_batch_norm_: BatchNorm layers folded into their convolutions leave the outputs unchanged."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from centernet.models import build_centernet
from centernet.models.fold_bn import fold_batch_norm_
from centernet.models.init import freeze_batch_norm_

ATOL = RTOL = 1e-4


def _randomise_norms_(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics and affine parameters (a fresh layer folds to the identity)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d | FrozenBatchNorm2d):
                n = module.weight.numel()
                module.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
                module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(n, generator=gen) * 0.2)


def _count_norms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d | FrozenBatchNorm2d) for m in model.modules())


def _norms_that_run(model: nn.Module, images: torch.Tensor) -> int:
    """BatchNorm layers used by the forward pass (DLA keeps two that never run, for its checkpoints)."""
    ran: set[int] = set()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d | FrozenBatchNorm2d)]
    handles = [m.register_forward_hook(lambda module, _a, _o: ran.add(id(module))) for m in norms]
    with torch.no_grad():
        model(images)
    for handle in handles:
        handle.remove()
    return len(ran)


def _assert_same_outputs(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> None:
    assert before.keys() == after.keys()
    for key in before:
        torch.testing.assert_close(after[key], before[key], atol=ATOL, rtol=RTOL, msg=key)


@pytest.mark.parametrize(
    ("backbone", "neck", "channels"),
    [
        ("resnet18", "deconv", (64, 32, 32)),
        ("resnet18", "deconv_lateral", (64, 32, 32)),
        ("resnet18", "dcn_deconv", (64, 32, 16)),
        ("dla34", "ida_up", (64, 128, 256, 512)),
    ],
)
def test_folded_model_computes_the_same_maps(backbone: str, neck: str, channels: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = build_centernet(
        backbone=backbone, backbone_weights=None, neck=neck, neck_channels=channels, num_classes=3,
        head_conv=16, prior_prob=0.1,
    )
    _randomise_norms_(model)
    model.eval()
    images = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        before = model(images)
    norms, running = _count_norms(model), _norms_that_run(model, images)
    folded = fold_batch_norm_(model)
    # every BatchNorm these models run follows a conv read by nothing else
    assert folded == running and _count_norms(model) == norms - running
    assert running == norms or backbone == "dla34"
    with torch.no_grad():
        after = model(images)
    _assert_same_outputs(before, after)


def test_frozen_batch_norm_and_channels_last_input() -> None:
    torch.manual_seed(1)
    model = build_centernet(
        backbone="resnet18", backbone_weights=None, neck="deconv", neck_channels=(32, 32, 32), num_classes=2,
        head_conv=8, prior_prob=0.1,
    )
    freeze_batch_norm_(model.backbone)
    _randomise_norms_(model, seed=1)
    model.eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(images)
    assert fold_batch_norm_(model, images.contiguous(memory_format=torch.channels_last)) == 20 + 3
    model.to(memory_format=torch.channels_last)
    with torch.no_grad():
        after = model(images.contiguous(memory_format=torch.channels_last))
    _assert_same_outputs(before, after)


class _Shared(nn.Module):
    """conv_a's output is read by its BatchNorm and by the residual sum; conv_b's only by its BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(4, 4, 3, padding=1)
        self.norm_a = nn.BatchNorm2d(4)
        self.conv_b = nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1, groups=2, bias=False)
        self.norm_b = nn.BatchNorm2d(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv_a(x)
        y = torch.relu(self.norm_a(a)) + a
        return self.norm_b(self.conv_b(y))


def test_second_reader_keeps_its_norm_and_grouped_transposed_conv_folds() -> None:
    torch.manual_seed(2)
    model = _Shared()
    _randomise_norms_(model, seed=2)
    model.eval()
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        before = model(x)
        assert fold_batch_norm_(model, x) == 1
        after = model(x)
    assert isinstance(model.norm_a, nn.BatchNorm2d) and isinstance(model.norm_b, nn.Identity)
    assert model.conv_b.bias is not None  # gained the folded shift
    torch.testing.assert_close(after, before, atol=ATOL, rtol=RTOL)


def test_training_mode_norms_and_shared_layers_are_left_alone() -> None:
    model = _Shared()
    model.train()
    assert fold_batch_norm_(model, torch.randn(1, 4, 8, 8)) == 0
    shared = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)).eval()
    twice = nn.Sequential(shared, shared)  # the same conv + norm applied twice: folding would apply it twice
    assert fold_batch_norm_(twice, torch.randn(1, 3, 4, 4)) == 0
