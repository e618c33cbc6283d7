"""The Trainer on its own: a ten-line model, batches held in memory, no files, a hook that records its calls."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from centernet.config.schema import TargetConfig
from centernet.data.normalize import ImageNormalizer
from centernet.engine.hooks import HookBase
from centernet.engine.targets import ConfiguredTargets
from centernet.engine.trainer import Trainer
from centernet.losses import CenterNetCriterion, PenaltyReducedFocalLoss

NUM_CLASSES = 2
DOWN_RATIO = 4


class TinyDetector(nn.Module):
    """One stride-4 convolution and three 1x1 heads: the outputs a CenterNet criterion expects."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 4, stride=DOWN_RATIO), nn.ReLU())
        self.heatmap = nn.Conv2d(8, NUM_CLASSES, 1)
        self.size = nn.Conv2d(8, 2, 1)
        self.offset = nn.Conv2d(8, 2, 1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(images)
        return {"heatmap": self.heatmap(features), "size": self.size(features), "offset": self.offset(features)}


def in_memory_batch(seed: int) -> dict[str, Any]:
    """Two 32x32 images, each with one bright square and its box."""
    images = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    images[0, :, 4:14, 6:18] = 255
    images[1, :, 16:28, 10:20] = 255
    return {
        "images": images,
        "boxes": torch.tensor([[[6.0, 4.0, 18.0, 14.0]], [[10.0, 16.0, 20.0, 28.0]]]),
        "labels": torch.tensor([[0], [1]]),
        "valid": torch.ones(2, 1, dtype=torch.bool),
        "ignore": torch.zeros(2, 1, dtype=torch.bool),
        "metas": [{"seed": seed}, {"seed": seed}],
    }


class RecordingHook(HookBase):
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []
        self.losses: list[float] = []

    def before_train(self) -> None:
        self.calls.append(("before_train", self.trainer.epoch, self.trainer.iteration))

    def after_step(self) -> None:
        self.calls.append(("after_step", self.trainer.epoch, self.trainer.iteration))
        assert self.trainer.last_step is not None
        self.losses.append(float(self.trainer.last_step.losses["loss"].detach()))

    def after_epoch(self) -> None:
        self.calls.append(("after_epoch", self.trainer.epoch, self.trainer.iteration))

    def after_train(self) -> None:
        self.calls.append(("after_train", self.trainer.epoch, self.trainer.iteration))


def make_trainer(epochs: int, batches: int, hook: HookBase) -> Trainer:
    torch.manual_seed(0)
    model = TinyDetector()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    return Trainer(
        model,
        CenterNetCriterion(PenaltyReducedFocalLoss()),
        [in_memory_batch(i) for i in range(batches)],
        optimizer,
        torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0),
        targets=ConfiguredTargets(TargetConfig(), num_classes=NUM_CLASSES, down_ratio=DOWN_RATIO),
        normalizer=ImageNormalizer([0.5] * 3, [0.25] * 3),
        max_epochs=epochs,
        hooks=[hook],
        progress=False,
    )


def test_hooks_are_called_in_loop_order_with_the_counters_already_advanced() -> None:
    hook = RecordingHook()
    trainer = make_trainer(epochs=2, batches=3, hook=hook)
    assert trainer.fit() is None  # no evaluation hook: no metrics
    assert hook.calls == [
        ("before_train", 0, 0),
        ("after_step", 0, 1), ("after_step", 0, 2), ("after_step", 0, 3), ("after_epoch", 1, 3),
        ("after_step", 1, 4), ("after_step", 1, 5), ("after_step", 1, 6), ("after_epoch", 2, 6),
        ("after_train", 2, 6),
    ]
    assert trainer.epoch == 2 and trainer.iteration == 6 and trainer.epoch_iter == 0


def test_the_loss_goes_down_and_every_step_reports_its_terms() -> None:
    hook = RecordingHook()
    trainer = make_trainer(epochs=1, batches=40, hook=hook)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.fit()
    assert trainer.last_step is not None
    assert set(trainer.last_step.losses) == {"loss", "heatmap", "size", "offset"}
    assert all(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))
    first, last = sum(hook.losses[:5]) / 5, sum(hook.losses[-5:]) / 5
    assert last < 0.5 * first, (first, last)


def test_state_dict_round_trip_restores_the_counters_and_weights() -> None:
    trainer = make_trainer(epochs=1, batches=3, hook=RecordingHook())
    trainer.fit()
    state = trainer.state_dict()
    fresh = make_trainer(epochs=1, batches=3, hook=RecordingHook())
    fresh.load_state_dict(state, path=None)  # type: ignore[arg-type]
    assert (fresh.epoch, fresh.iteration) == (1, 3)
    for a, b in zip(trainer.model.state_dict().values(), fresh.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
