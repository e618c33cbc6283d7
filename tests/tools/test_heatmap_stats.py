"""tools/heatmap_stats.py on a checkpoint whose heatmap is a known constant, its plot and its bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from centernet.engine.checkpoint import load_checkpoint, save_checkpoint
from tests.conftest import load_script
from tests.inference.test_predictor import tiny_config, write_checkpoint

heatmap_stats = load_script("tools/heatmap_stats.py")

CONSTANT_P = 0.2


def constant_heatmap_checkpoint(path: Path) -> Path:
    """A tiny model whose final heatmap conv has zero weights and bias logit(0.2): p = 0.2 in every cell."""
    write_checkpoint(path, tiny_config())
    state = load_checkpoint(path)
    state["model"]["head.heatmap.2.weight"] = torch.zeros_like(state["model"]["head.heatmap.2.weight"])
    state["model"]["head.heatmap.2.bias"].fill_(math.log(CONSTANT_P / (1 - CONSTANT_P)))
    save_checkpoint(state, path)
    return path


def test_constant_heatmap_statistics_table_and_plot(
    tiny_shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = constant_heatmap_checkpoint(tmp_path / "run" / "seed0" / "checkpoints" / "last.pth")
    plot = tmp_path / "hist.png"
    argv = ["--checkpoints", str(checkpoint), "--device", "cpu", "--no-progress", "--plot", str(plot),
            f"data.val.ann_file={tiny_shapes}/annotations/instances_val.json", f"data.val.img_dir={tiny_shapes}/val"]
    assert heatmap_stats.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| checkpoint | p 50% | p 90% | p 99% | peak at objects (median) |")
    cells = [cell.strip() for cell in out[2].strip("|").split("|")]
    assert cells[0] == "run/seed0"
    # every cell is 0.2 (the warp back to the image keeps a constant map constant inside the image): the
    # quantiles and the peaks are 0.2, and no peak is above its image's 99% quantile
    assert cells[1:5] == ["0.200", "0.200", "0.200", "0.200"]
    assert cells[5] == "0%"
    annotations = json.loads((tiny_shapes / "annotations" / "instances_val.json").read_text())["annotations"]
    assert int(cells[6]) == sum(not a.get("iscrowd", 0) for a in annotations) > 0
    assert plot.read_bytes().startswith(b"\x89PNG")

    with pytest.raises(SystemExit):  # the plot is kept unless --overwrite
        heatmap_stats.parse_args(argv)
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert heatmap_stats.parse_args([*argv, "--overwrite"]).overwrite


def test_missing_checkpoint_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert heatmap_stats.main(["--checkpoints", str(tmp_path / "none.pth"), "--no-progress"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "none.pth does not exist" in errors[0]
