"""Every backbone and neck trains: two optimizer steps on CPU at 32 px reduce the real CenterNet loss.

ResNet-34/50/101 are left out (the same torchvision trunk code as ResNet-18; their forward passes are
tested in test_backbone_resnet.py). The hourglass runs as a reduced 2-level variant
(``tests.models.test_backbone_hourglass.SMALL``): the full Hourglass-104 (191M parameters) takes about 10 s
per forward/backward step at 128 px on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from centernet.losses import CenterNetCriterion, build_heatmap_loss
from centernet.models import CenterNet, build_centernet
from centernet.targets import render_targets
from tests.models.test_backbone_hourglass import small_hourglass_detector

NUM_CLASSES = 3
SIZE = 32
STEPS = 2
LR = 1e-3


def _registered(backbone: str, neck: str, channels: tuple[int, ...]) -> Callable[[], CenterNet]:
    def build() -> CenterNet:
        return build_centernet(
            backbone=backbone, backbone_weights=None, neck=neck, neck_channels=channels,
            num_classes=NUM_CLASSES, head_conv=16, prior_prob=0.1,
        )  # fmt: skip

    return build


SMALL_NECK = (32, 32, 32)
CASES: dict[str, Callable[[], CenterNet]] = {
    "resnet18+deconv": _registered("resnet18", "deconv", SMALL_NECK),
    "resnet18+deconv_lateral": _registered("resnet18", "deconv_lateral", SMALL_NECK),
    "resnet18+dcn_deconv": _registered("resnet18", "dcn_deconv", SMALL_NECK),
    "efficientnet_lite0+deconv_lateral": _registered("efficientnet_lite0", "deconv_lateral", SMALL_NECK),
    "dla34+ida_up": _registered("dla34", "ida_up", (64, 128, 256, 512)),
    "hourglass(2 levels)+identity": lambda: small_hourglass_detector(NUM_CLASSES),
}


def _targets(output_size: int) -> dict[str, torch.Tensor]:
    boxes = torch.tensor([[[1.0, 1.0, 5.0, 6.0], [4.0, 0.0, 7.5, 3.0]], [[0.5, 0.5, 7.5, 7.5], [0, 0, 0, 0]]])
    labels = torch.tensor([[0, 2], [1, 0]])
    valid = torch.tensor([[True, True], [True, False]])
    return render_targets(boxes, labels, valid, num_classes=NUM_CLASSES, output_size=(output_size, output_size))  # 8x8


@pytest.mark.parametrize("name", list(CASES))
def test_a_few_steps_reduce_the_loss(name: str) -> None:
    torch.manual_seed(0)
    model = CASES[name]().train()
    assert model.output_stride == 4
    criterion = CenterNetCriterion(build_heatmap_loss("penalty_reduced_focal"))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=LR)
    images = torch.randn(2, 3, SIZE, SIZE)
    targets = _targets(SIZE // model.output_stride)
    losses = []
    for _ in range(STEPS):
        terms = criterion(model(images), targets)
        loss = torch.stack(list(terms.values())).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if not losses:  # every trainable parameter takes part
            assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0], losses
