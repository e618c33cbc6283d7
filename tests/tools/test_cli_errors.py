"""Bad input through the command-line tools: one clear line naming the file or key, exit code 1."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import load_script

train_tool = load_script("tools/train.py")
eval_tool = load_script("tools/eval.py")


def run_train(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], *overrides: str) -> str:
    code = train_tool.main(["--config", str(config), "--work-dir", str(tmp_path / "work"), "--no-progress", *overrides])
    assert code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]
    assert len(errors) == 1, errors
    return errors[0]


def copy_shapes(tiny_shapes: Path, tmp_path: Path) -> Path:
    root = tmp_path / "shapes"
    shutil.copytree(tiny_shapes, root)
    return root


def test_unknown_config_key(
    tiny_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = run_train(tiny_config(), tmp_path, capsys, "solver.learning_rate=0.1")
    assert "command-line override 'solver.learning_rate=0.1'" in line and "unknown config key" in line
    assert not (tmp_path / "work").exists()  # a config that fails leaves no run folder behind


def test_wrong_type(tiny_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = run_train(tiny_config("runtime: {seed: one}\n", name="typed.yaml"), tmp_path, capsys)
    assert "runtime.seed: expected an integer, got str 'one'" in line and "typed.yaml" in line
    assert "command-line" not in line


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = run_train(tmp_path / "absent.yaml", tmp_path, capsys)
    assert "absent.yaml" in line


def test_missing_annotation_file(
    tiny_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere" / "instances_train.json"
    line = run_train(tiny_config(), tmp_path, capsys, f"data.train.ann_file={missing}")
    assert str(missing) in line


def test_corrupt_annotation_json(
    tiny_config: Callable[..., Path], tiny_shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [1, 2,')
    line = run_train(tiny_config(), tmp_path, capsys, f"data.train.ann_file={broken}")
    assert str(broken) in line and "JSON" in line


def test_missing_image(
    tiny_config: Callable[..., Path], tiny_shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = copy_shapes(tiny_shapes, tmp_path)
    first = json.loads((root / "annotations" / "instances_train.json").read_text())["images"][0]
    (root / "train" / first["file_name"]).unlink()
    overrides = [f"data.train.ann_file={root}/annotations/instances_train.json", f"data.train.img_dir={root}/train"]
    line = run_train(tiny_config(), tmp_path, capsys, *overrides)
    assert first["file_name"] in line and str(first["id"]) in line


def test_eval_tool_rejects_a_predictions_file_that_is_not_json(
    tiny_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "dets.json"
    bad.write_text("not json")
    code = eval_tool.main(["--config", str(tiny_config()), "--predictions", str(bad), "--out-dir", str(tmp_path / "o")])
    assert code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and str(bad) in errors[0]
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_eval_tool_rejects_a_checkpoint_of_another_model(
    tiny_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    foreign = tmp_path / "foreign.pth"
    torch.save({"model": {"conv.weight": torch.zeros(1)}}, foreign)
    code = eval_tool.main(["--config", str(tiny_config()), "--checkpoint", str(foreign), "--no-progress"])
    assert code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "foreign.pth" in errors[0] and "does not fit" in errors[0]
    assert "1 unexpected keys (first: conv.weight)" in errors[0] and "missing keys (first: backbone." in errors[0]
    assert "the checkpoint stores no config" in errors[0]


TOOLS_WITH_A_MISSING_CONFIG = {
    "tools/train.py": ["--config", "{absent}"],
    "tools/eval.py": ["--config", "{absent}", "--predictions", "{tmp}/dets.json", "--out-dir", "{tmp}/o"],
    "tools/demo.py": ["--config", "{absent}", "--checkpoint", "{tmp}/c.pth", "--input", "{image}", "--output",
                      "{tmp}/o"],
    "tools/export.py": ["--config", "{absent}", "--checkpoint", "{tmp}/c.pth", "--format", "onnx", "--output",
                        "{tmp}/m.onnx"],
    "tools/benchmark.py": ["--config", "{absent}"],
    "tools/model_info.py": ["--config", "{absent}"],
    "tools/browse_dataset.py": ["--config", "{absent}", "--output", "{tmp}/o"],
    "tools/ablate.py": ["--configs", "{absent}", "--seeds", "0", "--work-dir", "{tmp}/study"],
}


@pytest.mark.parametrize("tool", sorted(TOOLS_WITH_A_MISSING_CONFIG))
def test_every_tool_reports_a_missing_config_in_one_line(
    tool: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # default output folders land here, if any were made
    image = tmp_path / "photo.png"
    image.write_bytes(b"")
    values = {"absent": str(tmp_path / "absent.yaml"), "tmp": str(tmp_path), "image": str(image)}
    argv = [item.format(**values) for item in TOOLS_WITH_A_MISSING_CONFIG[tool]]
    assert load_script(tool).main(argv) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "config file not found" in errors[0] and "absent.yaml" in errors[0], errors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]  # nothing written


def test_plot_logs_reports_a_missing_run_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot_logs = load_script("tools/plot_logs.py")
    assert plot_logs.main([str(tmp_path / "no_run"), "--output", str(tmp_path / "c.png")]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "no_run" in errors[0]


def test_scoring_a_detections_file_needs_a_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    detections = tmp_path / "dets.json"
    detections.write_text("[]")
    assert eval_tool.main(["--predictions", str(detections)]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "--predictions needs --config" in errors[0]
    assert not (tmp_path / "eval_dets").exists()


def test_unknown_albumentations_transform(
    tiny_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line = run_train(tiny_config(), tmp_path, capsys, "augment.albumentations=[{type: RandomRotate9, p: 0.5}]")
    assert "command-line override 'augment.albumentations=[{type: RandomRotate9, p: 0.5}]'" in line
    assert "tiny.yaml): augment.albumentations[0].type: 'RandomRotate9' is not an albumentations transform" in line
    assert "did you mean 'RandomRotate90'" in line
