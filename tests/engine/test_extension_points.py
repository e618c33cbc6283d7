"""The recipes of docs/architecture.md ("Adding a heatmap loss / a backbone / a hook"), followed literally."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from centernet.config import load_config
from centernet.engine.hooks import HookBase
from centernet.engine.trainer import Trainer
from centernet.losses import HEATMAP_LOSSES, CenterNetCriterion, HeatmapLoss, build_heatmap_loss
from centernet.losses.base import count_valid
from centernet.losses.masking import expand_mask
from centernet.models import BACKBONES
from tests.engine.test_trainer_unit import RecordingHook, TinyDetector, in_memory_batch, make_trainer


class SquaredErrorLoss(HeatmapLoss):
    """A throwaway heatmap loss: squared error of the probabilities, normalised by the valid cells."""

    def normaliser(self, target: Tensor, mask: Tensor | None) -> Tensor:
        return count_valid(target, mask)

    def forward(self, logits: Tensor, target: Tensor, mask: Tensor | None = None,
                normaliser: Tensor | None = None) -> Tensor:
        m = expand_mask(mask, logits)
        total = ((torch.sigmoid(logits.float()) - target.float()) ** 2 * m).sum()
        return total / (m.sum() if normaliser is None else normaliser)


def test_a_registered_heatmap_loss_is_built_by_name_normalised_by_its_count_and_trains(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(HEATMAP_LOSSES, "squared_error", SquaredErrorLoss)
    criterion = CenterNetCriterion(build_heatmap_loss("squared_error"))
    hook = RecordingHook()
    trainer = make_trainer(epochs=1, batches=30, hook=hook)
    trainer.criterion = criterion
    batch = in_memory_batch(0)
    targets = trainer.targets(batch, (32, 32), torch.device("cpu"))
    heatmap_norm, _ = criterion.normalisers(targets)
    assert heatmap_norm.item() == 2 * 2 * 8 * 8  # every cell of 2 images x 2 classes x 8 x 8 counts
    trainer.fit()
    assert sum(hook.losses[-5:]) < sum(hook.losses[:5])


class ThrowawayBackbone(nn.Module):
    """Four stride-2 stages: feature maps at strides 4, 8, 16 and 32 (the contract of models/registry.py)."""

    feature_channels = (8, 8, 8, 8)
    out_channels = 8
    stride = 32

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU())
        self.stages = nn.ModuleList(nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU()) for _ in range(3))

    def forward(self, images: Tensor) -> list[Tensor]:
        features = [self.stem(images)]
        for stage in self.stages:
            features.append(stage(features[-1]))
        return features


class IterationRecorder(HookBase):
    """A throwaway hook: the iteration after every step and the epoch after every epoch."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.epochs: list[int] = []

    def after_step(self) -> None:
        self.steps.append(self.trainer.iteration)

    def after_epoch(self) -> None:
        self.epochs.append(self.trainer.epoch)


def test_a_registered_backbone_is_selected_from_the_config_and_a_hook_added_after_from_config_runs(
    monkeypatch: pytest.MonkeyPatch, tiny_config: Callable[..., Path], tmp_path: Path
) -> None:
    monkeypatch.setitem(BACKBONES, "throwaway", lambda *, weights=None: ThrowawayBackbone())
    cfg = load_config(tiny_config(), ["model.backbone.type=throwaway", "solver.epochs=1"])
    trainer = Trainer.from_config(cfg, tmp_path / "run", progress=False)
    assert isinstance(trainer.model.backbone, ThrowawayBackbone)
    recorder = IterationRecorder()
    trainer.register_hooks([recorder])
    trainer.fit()
    assert recorder.steps == list(range(1, trainer.iters_per_epoch + 1)) and recorder.epochs == [1]
    metrics = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert 0.0 <= metrics["AP"] <= 1.0


def test_tiny_detector_matches_the_criterion_contract() -> None:
    outputs = TinyDetector()(torch.zeros(1, 3, 32, 32))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        "heatmap": (1, 2, 8, 8), "size": (1, 2, 8, 8), "offset": (1, 2, 8, 8)}
