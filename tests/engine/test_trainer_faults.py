"""Faults during training: a non-finite loss stops the run and keeps the last good checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from centernet.config import load_config
from centernet.engine.checkpoint import load_checkpoint
from centernet.engine.trainer import Trainer


def test_non_finite_loss_stops_and_names_the_step(tiny_config: Callable[..., Path], tmp_path: Path) -> None:
    config = tiny_config()
    work_dir = tmp_path / "run"
    Trainer(load_config(config, ["solver.epochs=1"]), work_dir, progress=False).fit()
    saved = (work_dir / "checkpoints" / "last.pth").read_bytes()

    trainer = Trainer(load_config(config), work_dir, resume=True, progress=False)
    healthy_forward = trainer.criterion.forward

    def exploding(outputs: dict[str, torch.Tensor], targets: dict[str, Any]) -> dict[str, torch.Tensor]:
        losses = healthy_forward(outputs, targets)
        return {**losses, "heatmap": losses["heatmap"] * float("nan")}

    trainer.criterion.forward = exploding  # type: ignore[method-assign]
    with pytest.raises(FloatingPointError) as info:
        trainer.fit()
    message = str(info.value)
    assert "non-finite loss at epoch 2, iteration 4" in message
    assert "'heatmap': nan" in message and str(work_dir / "checkpoints" / "last.pth") in message
    assert (work_dir / "checkpoints" / "last.pth").read_bytes() == saved  # the good checkpoint is untouched
    assert load_checkpoint(work_dir / "checkpoints" / "last.pth")["epoch"] == 1
