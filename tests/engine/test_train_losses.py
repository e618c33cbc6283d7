"""Every heatmap loss trains through the real engine; GHM-C's gradient-norm histogram is logged."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from centernet.config import load_config
from centernet.engine.trainer import Trainer

TINY_HEATMAP_ELEMENTS = 4 * 5 * 16 * 16  # batch 4, 5 classes, 64 px input / stride 4


@pytest.mark.parametrize("loss_type", ["penalty_reduced_focal", "focal", "ghm_c", "bce"])
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
