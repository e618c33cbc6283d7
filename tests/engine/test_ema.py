"""Weight EMA: hand-computed averages with the decay warm-up, checkpoints and inference loading."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from centernet.config import load_config
from centernet.engine.checkpoint import load_checkpoint, model_state_from_checkpoint
from centernet.engine.ema import ModelEMA
from centernet.engine.trainer import Trainer


def test_average_by_hand_with_the_decay_ramp() -> None:
    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    nn.init.constant_(model[0].weight, 0.0)
    ema = ModelEMA(model, decay=0.9, warmup_iters=2)
    expected = 0.0
    for step in range(1, 4):
        model[0].weight.data.fill_(float(step))  # the "trained" weight after step `step`
        model[1].num_batches_tracked.fill_(step)
        decay = 0.9 * (1 - math.exp(-step / 2))
        assert ema.current_decay() == pytest.approx(decay)
        ema.update(model)
        expected = decay * expected + (1 - decay) * step
        assert ema.module[0].weight.item() == pytest.approx(expected, rel=1e-6)
        assert ema.module[1].num_batches_tracked.item() == step  # integer buffers are copied
    assert ema.updates == 3 and not any(p.requires_grad for p in ema.module.parameters())


def test_no_ramp_and_invalid_decay() -> None:
    ema = ModelEMA(nn.Linear(1, 1), decay=0.5, warmup_iters=0)
    assert ema.current_decay() == 0.5
    with pytest.raises(ValueError, match=r"solver.ema_decay must be in \[0, 1\), got 1.0"):
        ModelEMA(nn.Linear(1, 1), decay=1.0, warmup_iters=0)


def test_state_round_trip() -> None:
    model = nn.Linear(2, 1)
    ema = ModelEMA(model, decay=0.5, warmup_iters=0)
    model.weight.data.add_(1.0)
    ema.update(model)
    other = ModelEMA(nn.Linear(2, 1), decay=0.5, warmup_iters=0)
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1 and torch.equal(other.module.weight, ema.module.weight)


def test_checkpoint_carries_the_ema_and_inference_prefers_it(tiny_config: Callable[..., Path], tmp_path: Path) -> None:
    cfg = load_config(tiny_config(), ["solver.epochs=1", "solver.ema=true", "solver.ema_warmup_iters=1"])
    trainer = Trainer.from_config(cfg, tmp_path / "run", progress=False)
    trainer.fit()
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pth")
    assert state["ema"]["updates"] == 3
    ema_weights = trainer.ema.module.state_dict()  # type: ignore[union-attr]
    assert all(torch.equal(state["ema"]["model"][k], v) for k, v in ema_weights.items())
    key = "backbone.conv1.weight"
    assert not torch.equal(state["ema"]["model"][key], state["model"][key])  # a real average, not a copy
    assert model_state_from_checkpoint(state, "x.pth") is state["ema"]["model"]
    assert model_state_from_checkpoint(state, "x.pth", prefer_ema=False) is state["model"]
