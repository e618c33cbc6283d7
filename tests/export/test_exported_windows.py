"""Sliced inference through an exported ONNX file: the same detections as the PyTorch model, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from centernet.export.windows import ExportedWindows, read_export_metadata
from centernet.inference.predictor import Detector
from centernet.inference.slicing import ArraySource, SliceSettings, predict_sliced
from tests.conftest import load_script
from tests.export.test_export import spread_checkpoint
from tests.inference.test_predictor import random_image, tiny_config

export_tool = load_script("tools/export.py")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("onnx")
    checkpoint = spread_checkpoint(folder / "model.pth", tiny_config())
    output = folder / "model.onnx"
    assert export_tool.main(["--checkpoint", str(checkpoint), "--format", "onnx", "--output", str(output),
                             "--topk", "20"]) == 0
    return checkpoint, output


def test_onnx_windows_give_the_pytorch_detections(exported: tuple[Path, Path]) -> None:
    checkpoint, output = exported
    image = random_image(150, 220, seed=5)
    settings = SliceSettings(size=64, overlap=0.25, batch_size=3)
    torch_rows = Detector.from_checkpoint(checkpoint, device="cpu", topk=20).predict_sliced(image, settings).rows()
    runner = ExportedWindows(output)
    runner.check(settings)
    onnx_rows = predict_sliced(ArraySource(image), runner, settings, progress=False)
    assert runner.class_names == tuple(json.loads(Path(f"{output}.json").read_text())["class_names"])
    assert len(onnx_rows) == len(torch_rows) > 0
    np.testing.assert_allclose(onnx_rows[:, 4], torch_rows[:, 4], atol=1e-5)
    np.testing.assert_allclose(onnx_rows[:, :4], torch_rows[:, :4], atol=1e-3)


def test_window_size_must_be_the_exported_input(exported: tuple[Path, Path]) -> None:
    _, output = exported
    with pytest.raises(ValueError, match=r"the exported model takes 64x64 inputs; slice windows give 96x96"):
        ExportedWindows(output).check(SliceSettings(size=96))


def test_missing_or_incomplete_metadata_is_named(exported: tuple[Path, Path], tmp_path: Path) -> None:
    _, output = exported
    copy = tmp_path / "bare.onnx"
    copy.write_bytes(output.read_bytes())
    with pytest.raises(FileNotFoundError, match=r"bare.onnx.json is missing: export the model with tools/export.py"):
        read_export_metadata(copy)
    Path(f"{copy}.json").write_text(json.dumps({"format": "onnx", "input_size": [64, 64]}))
    with pytest.raises(ValueError, match=r"bare.onnx.json lacks channel_order, mean, std, class_names"):
        ExportedWindows(copy)
