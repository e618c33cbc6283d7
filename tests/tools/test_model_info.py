"""tools/model_info.py: run as a subprocess on real configs; its figures match the library's."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from centernet.models import build_centernet
from centernet.models.complexity import measure_complexity
from tests.conftest import REPO, load_script

TOOL = REPO / "tools" / "model_info.py"
model_info = load_script("tools/model_info.py")


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOL), *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


def test_report_matches_the_library() -> None:
    result = run_tool("--config", "configs/centernet_resdcn18_voc_384.yaml", "data.input_size=[128,96]")
    assert result.returncode == 0, result.stderr
    with torch.device("meta"):
        model = build_centernet(
            backbone="resnet18", backbone_weights=None, neck="dcn_deconv", neck_channels=(256, 128, 64),
            num_classes=20, head_conv=64, prior_prob=0.1,
        )  # fmt: skip
    info = measure_complexity(model, (128, 96))
    out = result.stdout
    assert "model: resnet18 + dcn_deconv, 20 classes (the VOC classes), head_conv 64" in out
    assert "input: 128x96, output stride 4 (32x24 maps)" in out
    assert f"parameters: {info.parameters:,} " in out
    assert f"FLOPs: {info.flops:,} " in out
    rows = dict(re.findall(r"^(backbone|neck|head\.\w+|total) +([\d,]+) +[\d.]+$", out, flags=re.MULTILINE))
    assert set(rows) == {"backbone", "neck", "head.heatmap", "head.size", "head.offset", "total"}
    assert sum(int(v.replace(",", "")) for k, v in rows.items() if k != "total") == info.parameters


def test_markdown_row_and_num_classes(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    config = "configs/centernet_dla34_coco_512.yaml"
    assert model_info.main(["--config", config, "--markdown", "--num-classes", "80"]) == 0
    assert capsys.readouterr().out.strip() == f"| dla34 + ida_up | 19.68 M | 66.1 G | 4 | `{config}` |"
    assert model_info.main(["--config", config, "--num-classes", "7"]) == 0
    assert "model: dla34 + ida_up, 7 classes (--num-classes), head_conv 256" in capsys.readouterr().out


def test_bad_override_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    config = str(REPO / "configs" / "centernet_dla34_coco_512.yaml")
    assert model_info.main(["--config", config, "model.neck.channels=[64,128]"]) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "ida_up neck: channels [64, 128] must be the backbone's last levels" in errors[0]
    assert captured.out == ""
    assert model_info.main(["--config", config, "--num-classes", "0"]) == 1
    assert "--num-classes must be >= 1, got 0" in capsys.readouterr().err


def test_classes_come_from_the_config_or_its_annotations(
    tiny_config: Callable[..., Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    assert model_info.main(["--config", "configs/trees_efficientnet_lite0.yaml"]) == 0
    assert "model: efficientnet_lite0 + deconv_lateral, 1 class (data.classes)" in capsys.readouterr().out
    assert model_info.main(["--config", str(tiny_config())]) == 0  # the shapes annotations: 5 categories
    assert "5 classes (the categories of data.val.ann_file)" in capsys.readouterr().out
    missing = ["data.val.ann_file=/nonexistent/val.json", "data.train.ann_file=/nonexistent/train.json"]
    assert model_info.main(["--config", str(tiny_config()), *missing]) == 0
    assert "80 classes (no annotation file found: COCO's 80)" in capsys.readouterr().out
