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


def test_exported_detector_matches_the_pytorch_detector(exported: tuple[Path, Path]) -> None:
    from centernet.inference.exported import ExportedDetector, is_exported

    checkpoint, output = exported
    assert is_exported(output) and not is_exported(checkpoint)
    torch_detector = Detector.from_checkpoint(checkpoint, device="cpu", topk=20)
    onnx_detector = ExportedDetector(output)
    assert onnx_detector.class_names == torch_detector.class_names
    assert onnx_detector.score_threshold == torch_detector.score_threshold
    images = [random_image(40, 72, seed=1), random_image(64, 64, seed=2), random_image(90, 30, seed=3)]
    for ours, theirs in zip(onnx_detector.predict_batch(images), torch_detector.predict_batch(images), strict=True):
        np.testing.assert_allclose(ours.scores, theirs.scores, atol=1e-5)
        np.testing.assert_allclose(ours.boxes, theirs.boxes, atol=1e-2)  # image pixels
        np.testing.assert_array_equal(ours.labels, theirs.labels)


def test_eval_and_demo_run_the_exported_file(exported: tuple[Path, Path], tiny_shapes: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint, output = exported
    eval_tool, demo = load_script("tools/eval.py"), load_script("tools/demo.py")
    val = [f"data.val.ann_file={tiny_shapes}/annotations/instances_val.json", f"data.val.img_dir={tiny_shapes}/val",
           "eval.topk=20"]
    assert eval_tool.main(["--checkpoint", str(checkpoint), "--out-dir", str(tmp_path / "torch"), "--no-progress",
                           *val]) == 0
    assert eval_tool.main(["--checkpoint", str(output), "--out-dir", str(tmp_path / "onnx"), "--no-progress",
                           *val]) == 0
    ours = json.loads((tmp_path / "onnx" / "metrics.json").read_text())
    theirs = json.loads((tmp_path / "torch" / "metrics.json").read_text())
    assert ours["model"] == str(output) and ours["format"] == "onnx"
    for key in ("AP", "AP50", "recall@0.4"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-3), key
    image = tmp_path / "photo.png"
    import cv2

    assert cv2.imwrite(str(image), random_image(48, 80, seed=4))
    assert demo.main(["--checkpoint", str(output), "--input", str(image), "--output", str(tmp_path / "demo"),
                      "--score-thr", "0", "--no-progress"]) == 0
    assert len(json.loads((tmp_path / "demo" / "detections.json").read_text())) == 20
    capsys.readouterr()
    assert demo.main(["--checkpoint", str(output), "--input", str(image), "--output", str(tmp_path / "demo2"),
                      "--show-heatmap", "--no-progress"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "is an exported model" in errors[0] and "drop --show-heatmap" in errors[0]
