"""Every heatmap loss trains through the real engine; GHM-C's gradient-norm histogram is logged."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from centernet.config import load_config
from centernet.engine.trainer import Trainer

TINY_HEATMAP_ELEMENTS = 4 * 5 * 16 * 16  # batch 4, 5 classes, 64 px input / stride 4


@pytest.mark.parametrize("loss_type", ["penalty_reduced_focal", "focal", "ghm_c", "ghm_centernet", "bce"])
def test_each_heatmap_loss_trains_one_epoch(loss_type: str, tiny_config: Callable[..., Path], tmp_path: Path) -> None:
    cfg = load_config(tiny_config(), ["solver.epochs=1", f"loss.heatmap.type={loss_type}"])
    assert cfg.loss.heatmap.type == loss_type
    Trainer.from_config(cfg, tmp_path / "run", progress=False).fit()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["type"] == "train"]
    assert train and all(math.isfinite(r["heatmap"]) and r["heatmap"] > 0 for r in train)
    assert (tmp_path / "run" / "eval" / "metrics.json").is_file()


def test_ghm_c_histogram_in_jsonl_and_tensorboard(tiny_config: Callable[..., Path], tmp_path: Path) -> None:
    cfg = load_config(tiny_config(), ["solver.epochs=1", "loss.heatmap.type=ghm_c", "loss.heatmap.bins=5"])
    Trainer.from_config(cfg, tmp_path / "run", progress=False).fit()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    counts = [r["ghm_bin_counts"] for r in records if r["type"] == "train"]
    assert counts and all(len(c) == 5 and sum(c) == TINY_HEATMAP_ELEMENTS for c in counts)
    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    assert "train/ghm_gradient_norm" in events.Tags()["histograms"]
    last = events.Histograms("train/ghm_gradient_norm")[-1].histogram_value
    assert last.num == TINY_HEATMAP_ELEMENTS and list(last.bucket) == [float(c) for c in counts[-1]]


def test_batch_then_epoch_switch_is_logged_and_checkpointed(tiny_config: Callable[..., Path], tmp_path: Path) -> None:
    overrides = ["loss.heatmap.type=ghm_centernet", "loss.heatmap.density=batch_then_epoch",
                 "loss.heatmap.switch_epoch=1"]
    cfg = load_config(tiny_config(), overrides)  # 2 epochs of 3 steps
    trainer = Trainer.from_config(cfg, tmp_path / "run", progress=False)
    trainer.fit()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["type"] == "train"]
    assert [r.get("ghm_switch_epoch") for r in train] == [None] * 3 + [1] * 3
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pth", map_location="cpu", weights_only=False)
    criterion = state["criterion"]
    assert int(criterion["heatmap_loss.switched_at_epoch"]) == 1
    assert int(criterion["heatmap_loss.epochs_ended"]) == 2
    # the hook passed the epoch-mean heatmap loss of epoch 2 (3 steps, one record per step)
    mean = sum(r["heatmap"] for r in train[3:]) / 3
    assert float(criterion["heatmap_loss.last_epoch_loss"]) == pytest.approx(mean, rel=1e-5)
