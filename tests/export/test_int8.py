"""tools/export.py --quantize int8: a real ONNX Runtime static quantization of a tiny model calibrated on real
images, its metadata, the accuracy comparison on another set, the tolerance and the error lines."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from centernet.config import config_to_dict, load_config
from centernet.engine.checkpoint import load_checkpoint, save_checkpoint
from centernet.export.quantize import quantized_operators
from centernet.inference.exported import ExportedDetector
from tests.conftest import load_script
from tests.export.test_export import spread_checkpoint
from tests.inference.test_predictor import CLASS_NAMES, random_image

export_tool = load_script("tools/export.py")


@pytest.fixture
def checkpoint(tiny_config: Callable[..., Path], tmp_path: Path) -> Path:
    """A tiny model with separated scores whose stored config points at the tiny shapes set."""
    cfg = load_config(tiny_config())
    path = spread_checkpoint(tmp_path / "model.pth", cfg)
    save_checkpoint({**load_checkpoint(path), "config": config_to_dict(cfg)}, path)
    return path


def export(checkpoint: Path, output: Path, *extra: str) -> int:
    return export_tool.main(["--checkpoint", str(checkpoint), "--format", "onnx", "--output", str(output),
                             "--topk", "20", "--quantize", "int8", "--calibration-images", "8", *extra])


def test_int8_model_is_written_quantized_and_scored_against_fp32(checkpoint: Path, tmp_path: Path) -> None:
    output = tmp_path / "model.onnx"
    assert export(checkpoint, output, "--verify", "--max-ap50-drop", "100") == 0
    int8 = tmp_path / "model.int8.onnx"
    metadata = json.loads(Path(f"{int8}.json").read_text())
    quantization = metadata["quantization"]
    assert quantization["calibration"] == "set train" and quantization["images"] == 8
    assert quantization["format"] == "QDQ" and quantization["quantized"]["Conv"] > 10
    quantized, left = quantized_operators(int8)
    assert quantized["Conv"] == quantization["quantized"]["Conv"]
    # the head's heatmap, size and offset outputs and the stem stay float (ResNet-18 has no depthwise convolution)
    assert left == {"Conv": 3 + 1} == quantization["float"]
    assert quantization["keep_float"] == ["head_outputs", "depthwise", "stem"]
    operators = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "TopK"} <= operators  # the decoder stays in the graph
    report = metadata["verification"]
    assert report["set"] is None or isinstance(report["set"], str)
    assert set(report["fp32"]) == set(report["int8"]) == {"AP", "AP50"}
    assert 0.0 <= report["box_agreement"] <= 1.0
    assert metadata["class_names"] == CLASS_NAMES  # the fp32 metadata carried over
    images = [random_image(64, 64, seed=s) for s in range(3)]
    fp32_dets = ExportedDetector(output).predict_batch(images)
    int8_dets = ExportedDetector(int8).predict_batch(images)
    scores = np.concatenate([d.scores for d in int8_dets]) - np.concatenate([d.scores for d in fp32_dets])
    assert np.abs(scores).max() < 0.1  # the same model, rounded: near, not equal
    assert np.abs(scores).max() > 0.0


def test_a_drop_past_the_tolerance_keeps_the_file_under_another_name(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "model.onnx"
    assert export(checkpoint, output, "--verify", "--max-ap50-drop", "-1") == 1  # any result is "too far"
    errors = [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "> --max-ap50-drop -1.0; the int8 model is kept as" in errors[0]
    assert not (tmp_path / "model.int8.onnx").exists()
    assert (tmp_path / "model.int8.rejected.onnx").is_file() and (tmp_path / "model.int8.rejected.onnx.json").is_file()


@pytest.mark.parametrize(("extra", "message"), [
    (["--calibration-set", "nope"], "--calibration-set nope: not a folder, 'train' or a val set"),
    (["--calibration-images", "0"], "--calibration-images must be >= 1, got 0"),
    (["--calibration-set", "x", "--accuracy-set", "x"], "--calibration-set x is also --accuracy-set"),
])
def test_bad_calibration_input_is_one_line(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           extra: list[str], message: str) -> None:
    assert export(checkpoint, tmp_path / "model.onnx", *extra) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and message in errors[0], errors


def test_empty_calibration_folder_is_refused(checkpoint: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert export(checkpoint, tmp_path / "model.onnx", "--calibration-set", str(tmp_path / "empty")) == 1
    assert "the folder holds no images" in capsys.readouterr().err


def test_keep_float_picks_head_outputs_depthwise_and_stem(tmp_path: Path) -> None:
    import torch
    from torch import nn

    from centernet.export.quantize import float_convolutions

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.pointwise = nn.Conv2d(8, 8, 1)
            self.out = nn.Conv2d(8, 2, 1)  # read by no other convolution: a head output

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(torch.relu(self.pointwise(torch.relu(self.depthwise(torch.relu(self.stem(x)))))))

    path = tmp_path / "tiny.onnx"
    torch.onnx.export(Tiny().eval(), (torch.zeros(1, 3, 8, 8),), str(path), dynamo=False)
    names = [node.name for node in onnx.load(str(path)).graph.node if node.op_type == "Conv"]
    assert len(names) == 4
    stem, depthwise, _pointwise, out = names
    assert float_convolutions(path, ["head_outputs"]) == [out]
    assert float_convolutions(path, ["depthwise"]) == [depthwise]
    assert float_convolutions(path, ["stem"]) == [stem]
    assert sorted(float_convolutions(path, ["head_outputs", "depthwise", "stem"])) == sorted([out, depthwise, stem])
    assert float_convolutions(path, []) == []


def test_keep_float_none_quantizes_every_convolution(checkpoint: Path, tmp_path: Path) -> None:
    assert export(checkpoint, tmp_path / "model.onnx", "--keep-float") == 0
    quantized, left = quantized_operators(tmp_path / "model.int8.onnx")
    assert not left and quantized["Conv"] > 10
