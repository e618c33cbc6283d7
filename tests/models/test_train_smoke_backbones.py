"""Every backbone and neck trains, with either box head: two optimizer steps on CPU at 32 px reduce the real
CenterNet loss (size/offset head, L1) or TTFNet loss (ltrb head, elliptical targets, GIoU).

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
from centernet.losses.box_terms import LtrbGIoUTerms
from centernet.models import CenterNet, build_centernet
from centernet.targets import render_targets, render_ttf_targets
from tests.models.test_backbone_hourglass import small_hourglass_detector

NUM_CLASSES = 3
SIZE = 32
STEPS = 2
LR = 1e-3


def _registered(backbone: str, neck: str, channels: tuple[int, ...]) -> Callable[[str], CenterNet]:
    def build(box: str) -> CenterNet:
        return build_centernet(
            backbone=backbone, backbone_weights=None, neck=neck, neck_channels=channels,
            num_classes=NUM_CLASSES, head_conv=16, prior_prob=0.1, box=box,
        )  # fmt: skip

    return build


SMALL_NECK = (32, 32, 32)
CASES: dict[str, Callable[[str], CenterNet]] = {
    "resnet18+deconv": _registered("resnet18", "deconv", SMALL_NECK),
    "resnet18+deconv_lateral": _registered("resnet18", "deconv_lateral", SMALL_NECK),
    "resnet18+dcn_deconv": _registered("resnet18", "dcn_deconv", SMALL_NECK),
    "efficientnet_lite0+deconv_lateral": _registered("efficientnet_lite0", "deconv_lateral", SMALL_NECK),
    "dla34+ida_up": _registered("dla34", "ida_up", (64, 128, 256, 512)),
    "hourglass(2 levels)+identity": lambda box: small_hourglass_detector(NUM_CLASSES, box),
}


def _targets(output_size: int, box: str) -> dict[str, torch.Tensor]:
    boxes = torch.tensor([[[1.0, 1.0, 5.0, 6.0], [4.0, 0.0, 7.5, 3.0]], [[0.5, 0.5, 7.5, 7.5], [0, 0, 0, 0]]])
    labels = torch.tensor([[0, 2], [1, 0]])
    valid = torch.tensor([[True, True], [True, False]])
    grid = (output_size, output_size)  # 8x8
    if box == "ltrb":
        return render_ttf_targets(boxes * 4, labels, valid, ignore=None, num_classes=NUM_CLASSES, output_size=grid,
                                  down_ratio=4, alpha=0.54, beta=0.54, box_weight="log_area")
    return render_targets(boxes, labels, valid, num_classes=NUM_CLASSES, output_size=grid)


def _criterion(box: str) -> CenterNetCriterion:
    box_terms = LtrbGIoUTerms(weight=5.0, down_ratio=4) if box == "ltrb" else None
    return CenterNetCriterion(build_heatmap_loss("penalty_reduced_focal"), box_terms=box_terms)


@pytest.mark.parametrize("box", ["size_offset", "ltrb"])
@pytest.mark.parametrize("name", list(CASES))
def test_a_few_steps_reduce_the_loss(name: str, box: str) -> None:
    torch.manual_seed(0)
    model = CASES[name](box).train()
    assert model.output_stride == 4
    criterion = _criterion(box)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=LR)
    images = torch.randn(2, 3, SIZE, SIZE)
    targets = _targets(SIZE // model.output_stride, box)
    losses = []
    for _ in range(STEPS):
        terms = criterion(model(images), targets)
        assert ("box" in terms) == (box == "ltrb")
        loss = torch.stack(list(terms.values())).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if not losses:  # every trainable parameter takes part
            assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0], losses
