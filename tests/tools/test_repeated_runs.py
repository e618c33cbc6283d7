"""Running tools/train.py and tools/eval.py twice never replaces an earlier result unasked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from centernet.utils.output_dirs import default_file_mode
from tests.conftest import REPO, TINY_CONFIG, load_script

train_tool = load_script("tools/train.py")
eval_tool = load_script("tools/eval.py")

ONE_EPOCH = "solver: {epochs: 1, lr_steps: [], min_iters: 0}\n"  # replaces the solver block: keep no floor


@pytest.fixture(scope="module")
def config(tiny_shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    base = REPO / "configs" / "shapes_resnet18.yaml"
    path.write_text(TINY_CONFIG.format(base=base, root=tiny_shapes) + ONE_EPOCH)
    return path


@pytest.fixture(scope="module")
def run_dir(config: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch run (trained once for the module)."""
    work_dir = tmp_path_factory.mktemp("runs") / "tiny"
    assert train_tool.main(["--config", str(config), "--work-dir", str(work_dir), "--no-progress"]) == 0
    return work_dir


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file under ``folder``."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file()}


def error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]


def test_training_twice_into_one_folder_is_refused_and_changes_nothing(
    config: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(run_dir)
    capsys.readouterr()
    assert train_tool.main(["--config", str(config), "--work-dir", str(run_dir), "--no-progress"]) == 1
    (line,) = error_lines(capsys)
    assert f"{run_dir} already holds a run" in line
    assert "--resume" in line and "--work-dir" in line and "--overwrite" in line
    assert snapshot(run_dir) == before


def test_auto_resume_reports_a_finished_run(config: Path, run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(run_dir)
    assert train_tool.main(["--config", str(config), "--work-dir", str(run_dir), "--auto-resume"]) == 0
    err = capsys.readouterr().err
    assert "holds a finished run: AP " in err and str(run_dir / "eval" / "metrics.json") in err
    assert snapshot(run_dir) == before


def test_overwrite_moves_the_earlier_run_aside(config: Path, tmp_path: Path) -> None:
    work_dir = tmp_path / "run"
    work_dir.mkdir()
    (work_dir / "metrics.jsonl").write_text('{"type": "train", "epoch": 1}\n')
    assert train_tool.main(["--config", str(config), "--work-dir", str(work_dir), "--overwrite",
                            "--no-progress"]) == 0
    (old,) = tmp_path.glob("run.old-*")
    assert (old / "metrics.jsonl").read_text() == '{"type": "train", "epoch": 1}\n'
    records = [json.loads(line) for line in (work_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["type"] == "val"] == [1]


def test_files_respect_the_umask(run_dir: Path) -> None:
    for path in (run_dir / "checkpoints" / "last.pth", run_dir / "eval" / "metrics.json"):
        assert path.stat().st_mode & 0o777 == default_file_mode(), path


def test_evaluation_gets_its_own_folder_and_records_what_produced_it(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    training_metrics = (run_dir / "eval" / "metrics.json").read_bytes()
    checkpoint = run_dir / "checkpoints" / "best.pth"
    argv = ["--checkpoint", str(checkpoint), "--flip", "--no-progress"]
    assert eval_tool.main(argv) == 0
    out = run_dir / "eval_best_flip"
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["AP"] <= 1.0
    assert metrics["checkpoint"] == str(checkpoint) and metrics["epoch"] == 1
    assert metrics["flip"] is True and metrics["scales"] == [1.0] and metrics["resize"] == "fixed"
    assert metrics["backend"] == "pycocotools" and metrics["config"] == f"{checkpoint} ['config']"
    assert (run_dir / "eval" / "metrics.json").read_bytes() == training_metrics

    before = snapshot(out)
    capsys.readouterr()
    assert eval_tool.main(argv) == 1
    (line,) = error_lines(capsys)
    assert str(out / "metrics.json") in line and "--out-dir" in line and "--overwrite" in line
    assert snapshot(out) == before
    assert eval_tool.main([*argv, "--overwrite"]) == 0


def test_evaluation_folder_names_the_test_options(run_dir: Path) -> None:
    checkpoint = run_dir / "checkpoints" / "last.pth"
    argv = ["--checkpoint", str(checkpoint), "--scales", "0.5", "1", "eval.merge=nms", "eval.resize=pad",
            "--no-progress"]
    assert eval_tool.main(argv) == 0
    metrics = json.loads((run_dir / "eval_last_scales0.5-1_nms_pad" / "metrics.json").read_text())
    assert metrics["scales"] == [0.5, 1.0] and metrics["resize"] == "pad" and metrics["merge"] == "nms"
    assert metrics["overrides"] == ["eval.merge=nms", "eval.resize=pad"]


def test_make_demo_reruns_with_auto_resume() -> None:
    """`make demo` a second time reports the finished run (tools/train.py --auto-resume, tested above)."""
    dry_run = subprocess.run(["make", "-n", "demo"], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    train_lines = [line for line in dry_run.stdout.splitlines() if "tools/train.py" in line]
    command = ".venv/bin/python tools/train.py --config configs/trees_efficientnet_lite0.yaml --auto-resume"
    assert train_lines == [command]


def test_auto_resume_finishes_a_run_stopped_before_its_final_evaluation(config: Path, tmp_path: Path) -> None:
    work_dir = tmp_path / "run"
    assert train_tool.main(["--config", str(config), "--work-dir", str(work_dir), "--no-progress"]) == 0
    (work_dir / "eval" / "metrics.json").unlink()  # as if stopped between the last checkpoint and the evaluation
    checkpoint = (work_dir / "checkpoints" / "last.pth").read_bytes()
    assert train_tool.main(["--config", str(config), "--work-dir", str(work_dir), "--auto-resume",
                            "--no-progress"]) == 0
    assert 0.0 <= json.loads((work_dir / "eval" / "metrics.json").read_text())["AP"] <= 1.0
    assert (work_dir / "checkpoints" / "last.pth").read_bytes() == checkpoint  # nothing trained again
