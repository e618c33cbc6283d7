"""Faults during training: a non-finite loss stops the run and keeps the last good checkpoint, or is
skipped a limited number of times (``solver.skip_nonfinite_steps``)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from centernet.config import load_config
from centernet.engine.checkpoint import load_checkpoint
from centernet.engine.hooks import CheckpointHook
from centernet.engine.trainer import Trainer


def test_non_finite_loss_stops_and_names_the_step(tiny_config: Callable[..., Path], tmp_path: Path) -> None:
    config = tiny_config()
    work_dir = tmp_path / "run"
    Trainer.from_config(load_config(config, ["solver.epochs=1"]), work_dir, progress=False).fit()
    saved = (work_dir / "checkpoints" / "last.pth").read_bytes()

    trainer = Trainer.from_config(load_config(config), work_dir, resume=True, progress=False)
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


def poison(trainer: Trainer, bad_calls: set[int]) -> None:
    """Make the heatmap term NaN on the given (1-based) criterion calls."""
    healthy_forward = trainer.criterion.forward
    calls = [0]

    def forward(outputs: dict[str, torch.Tensor], targets: dict[str, Any]) -> dict[str, torch.Tensor]:
        calls[0] += 1
        losses = healthy_forward(outputs, targets)
        return {**losses, "heatmap": losses["heatmap"] * float("nan")} if calls[0] in bad_calls else losses

    trainer.criterion.forward = forward  # type: ignore[method-assign]


def test_skipped_step_leaves_weights_untouched_then_the_next_bad_one_stops(
    tiny_config: Callable[..., Path], tmp_path: Path
) -> None:
    cfg = load_config(tiny_config(), ["solver.skip_nonfinite_steps=1"])
    trainer = Trainer.from_config(cfg, tmp_path / "run", progress=False)
    poison(trainer, {1, 2})
    batch = next(iter(trainer.train_loader))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items() if v.dtype.is_floating_point}
    losses = trainer.train_step(batch)
    assert math.isnan(float(losses["loss"].detach())) and trainer.skipped_steps == 1 and trainer.iteration == 1
    assert all(torch.equal(trainer.model.state_dict()[k], v) for k, v in before.items() if "running" not in k)
    with pytest.raises(FloatingPointError) as info:
        trainer.train_step(batch)
    message = str(info.value)
    assert "non-finite loss at epoch 1, iteration 2" in message and "'heatmap': nan" in message
    assert "1 step(s) already skipped (solver.skip_nonfinite_steps=1)" in message
    assert "last good checkpoint: none" in message


def test_skipped_steps_are_counted_and_logged(
    tiny_config: Callable[..., Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = load_config(tiny_config(), ["solver.skip_nonfinite_steps=2", "eval.interval=0"])
    trainer = Trainer.from_config(cfg, tmp_path / "run", progress=False)
    poison(trainer, {2, 5})
    with caplog.at_level(logging.WARNING, logger="centernet"):
        trainer.fit()
    skipped = [r.getMessage() for r in caplog.records if "skipped step" in r.getMessage()]
    assert len(skipped) == 2 and "(1/2 skips allowed)" in skipped[0] and "(2/2 skips allowed)" in skipped[1]
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("skipped_steps", 0) for r in records if r["type"] == "train"] == [0, 1, 1, 1, 2, 2]
    assert all(bool(torch.isfinite(p).all()) for p in trainer.model.parameters())
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pth")["skipped_steps"] == 2


def test_non_finite_weights_are_never_saved(tiny_config: Callable[..., Path], tmp_path: Path) -> None:
    trainer = Trainer.from_config(load_config(tiny_config()), tmp_path / "run", progress=False)
    with torch.no_grad():
        trainer.model.head.heatmap[0].weight[0, 0, 0, 0] = float("inf")
    expected = r"non-finite weights at epoch 1, iteration 0 \(head\.heatmap\.0\.weight and 0 more\); not saved"
    with pytest.raises(FloatingPointError, match=expected):
        next(h for h in trainer.hooks if isinstance(h, CheckpointHook)).save(None)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_diverged_model_stops_before_evaluation(tiny_config: Callable[..., Path], tmp_path: Path) -> None:
    """BatchNorm statistics count as weights, and weights too large for float32 outputs give NaN detections:
    both stop with a ``non-finite`` FloatingPointError (what an ablation's tuning records as a diverged trial)."""
    from centernet.engine.hooks import EvalHook

    trainer = Trainer.from_config(load_config(tiny_config()), tmp_path / "run", progress=False)
    evaluation = next(h for h in trainer.hooks if isinstance(h, EvalHook))
    running_var = next(name for name, _ in trainer.model.named_buffers() if name.endswith("running_var"))
    buffer = dict(trainer.model.named_buffers())[running_var]
    with torch.no_grad():
        buffer[0] = float("nan")
    with pytest.raises(FloatingPointError, match=f"non-finite weights at epoch 0, iteration 0 \\({running_var} "):
        evaluation.run()
    with torch.no_grad():
        buffer[0] = 1.0
        for layer in (trainer.model.head.size[0], trainer.model.head.size[2]):  # finite weights, NaN sizes
            layer.weight.mul_(1e37)
    with pytest.raises(FloatingPointError, match=r"non-finite detections \(image .*\): .* training diverged"):
        evaluation.run()
    assert not (tmp_path / "run" / "eval").exists()
