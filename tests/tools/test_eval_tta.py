"""tools/eval.py with test-time augmentation (flip, several scales, pad mode) on the tiny shapes set."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from centernet.config import load_config
from centernet.engine.checkpoint import save_checkpoint
from centernet.models.build import build_model
from tests.conftest import load_script

eval_tool = load_script("tools/eval.py")

TOPK = 7


@pytest.fixture
def config_and_checkpoint(tiny_config: Callable[..., Path], tmp_path: Path) -> tuple[Path, Path]:
    config = tiny_config()
    torch.manual_seed(0)
    model = build_model(load_config(config), 5)  # the shapes set has 5 classes
    checkpoint = tmp_path / "tiny.pth"
    save_checkpoint({"model": model.state_dict()}, checkpoint)
    return config, checkpoint


@pytest.mark.parametrize(
    "extra",
    [
        ["--flip", "--scales", "0.75", "1.25", "eval.merge=soft_nms"],
        ["--scales", "0.5,1.0", "eval.merge=nms", "eval.resize=pad"],
    ],
)
def test_eval_with_tta_writes_metrics(config_and_checkpoint: tuple[Path, Path], tmp_path: Path,
                                      extra: list[str]) -> None:
    config, checkpoint = config_and_checkpoint
    out = tmp_path / "eval"
    code = eval_tool.main(["--config", str(config), "--checkpoint", str(checkpoint), "--out-dir", str(out),
                           "--no-progress", f"eval.topk={TOPK}", *extra])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metric"] == "coco" and 0.0 <= metrics["AP"] <= 1.0
    records = json.loads((out / "detections.json").read_text())
    per_image = Counter(r["image_id"] for r in records)
    assert len(per_image) == 4 and max(per_image.values()) <= TOPK  # 4 val images, top-K after the merge


def test_bad_scales_are_one_line_errors(config_and_checkpoint: tuple[Path, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    config, checkpoint = config_and_checkpoint
    assert eval_tool.main(["--config", str(config), "--checkpoint", str(checkpoint), "--out-dir", str(tmp_path),
                           "--scales", "0", "1"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "eval.scales must be a non-empty list of positive numbers" in errors[0]
