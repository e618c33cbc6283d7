"""End-to-end training on a tiny real dataset: outputs, TensorBoard, resume, the eval tool."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from centernet.config import load_config
from centernet.engine.checkpoint import load_checkpoint
from centernet.engine.trainer import Trainer
from tests.conftest import REPO, load_script

COCO_KEYS = {"metric", "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "per_class"}
PR_KEYS = {"precision@0.4", "recall@0.4", "f1@0.4", "image_mean_precision@0.4", "image_mean_recall@0.4",
           "best_f1", "best_f1_threshold", "precision_recall"}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, tiny_shapes: Path) -> tuple[Path, Path]:
    """One 2-epoch run shared by the tests of this module: (config path, work dir)."""
    root = tmp_path_factory.mktemp("run")
    from tests.conftest import TINY_CONFIG

    config = root / "tiny.yaml"
    config.write_text(TINY_CONFIG.format(base=REPO / "configs" / "shapes_resnet18.yaml", root=tiny_shapes))
    work_dir = root / "work"
    Trainer.from_config(load_config(config, ["runtime.vis_interval=4"]), work_dir, progress=False).fit()
    return config, work_dir


def test_run_writes_every_documented_output(trained_run: tuple[Path, Path]) -> None:
    _, work_dir = trained_run
    for name in (
        "config.yaml",
        "env.json",
        "metrics.jsonl",
        "checkpoints/last.pth",
        "checkpoints/best.pth",
        "eval/metrics.json",
        "eval/detections.json",
        "eval/pr_curves.png",
        "eval/f1_curve.png",
        "eval/predictions.png",
    ):
        assert (work_dir / name).is_file(), name
    assert load_config(work_dir / "config.yaml").data.input_size == [64, 64]
    env = json.loads((work_dir / "env.json").read_text())
    assert env["torch"] == torch.__version__ and env["device"] == "cpu"

    records = [json.loads(line) for line in (work_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["type"] == "train"]
    val = [r for r in records if r["type"] == "val"]
    assert len(train) == 6  # 3 iterations per epoch (12 images / 4), logged every iteration, 2 epochs
    assert {"loss", "heatmap", "size", "offset", "lr"} <= set(train[0])
    assert train[0]["loss"] == pytest.approx(train[0]["heatmap"] + train[0]["size"] + train[0]["offset"], rel=1e-5)
    assert [r["epoch"] for r in val] == [1, 2]

    metrics = json.loads((work_dir / "eval" / "metrics.json").read_text())
    assert set(metrics) == COCO_KEYS | PR_KEYS and metrics["metric"] == "coco"
    assert 0.0 <= metrics["AP"] <= 1.0
    assert metrics["precision_recall"]["score_threshold"] == 0.3 and metrics["precision_recall"]["iou_threshold"] == 0.4
    values = [v for k, v in metrics.items() if k not in ("metric", "per_class", "precision_recall")]
    values += list(metrics["per_class"].values())
    assert all(v is None or 0.0 <= v <= 1.0 for v in values)
    dets = json.loads((work_dir / "eval" / "detections.json").read_text())
    assert len(dets) == 4 * 100  # 4 val images x top-100
    assert set(dets[0]) == {"image_id", "file_name", "category_id", "category_name", "bbox", "score"}


def test_checkpoint_holds_config_and_class_mapping(trained_run: tuple[Path, Path]) -> None:
    _, work_dir = trained_run
    state = load_checkpoint(work_dir / "checkpoints" / "last.pth")
    assert state["epoch"] == 2 and state["iteration"] == 6
    assert state["config"]["data"]["input_size"] == [64, 64]
    assert state["class_names"] and len(state["class_names"]) == len(state["label_to_category_id"])


def test_tensorboard_events_hold_loss_terms_and_metrics(trained_run: tuple[Path, Path]) -> None:
    _, work_dir = trained_run
    events = EventAccumulator(str(work_dir / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/heatmap", "train/size", "train/offset", "train/lr"} <= tags
    assert {"val/AP", "val/AP50", "val/AR100"} <= tags
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4, 5, 6]
    final_ap = json.loads((work_dir / "eval" / "metrics.json").read_text())["AP"]
    assert events.Scalars("val/AP")[-1].value == pytest.approx(final_ap, abs=1e-6)
    # runtime.vis_interval=4 over 6 iterations (counted from 0 before each step): images at steps 0 and 4
    assert {"train/visual/0", "train/visual/1"} <= set(events.Tags()["images"])
    visuals = events.Images("train/visual/0")
    assert [image.step for image in visuals] == [0, 4]
    assert visuals[0].height == 64 and visuals[0].width >= 3 * 64  # three 64-px panels side by side (+ gaps)


def test_eval_tool_scores_predictions_like_pycocotools(trained_run: tuple[Path, Path], tmp_path: Path) -> None:
    config, work_dir = trained_run
    eval_tool = load_script("tools/eval.py")
    predictions = work_dir / "eval" / "detections.json"
    assert eval_tool.main(["--config", str(config), "--predictions", str(predictions), "--out-dir", str(tmp_path)]) == 0
    ours = json.loads((tmp_path / "metrics.json").read_text())

    cfg = load_config(config)
    with redirect_stdout(StringIO()):
        gt = COCO(cfg.data.val.ann_file)
        evaluator = COCOeval(gt, gt.loadRes(str(predictions)), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    names = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100"]
    for name, value in zip(names, evaluator.stats, strict=False):
        expected = None if value < 0 else float(value)
        assert ours[name] == pytest.approx(expected, abs=5e-7), name  # metrics.json holds 6 decimals


def test_eval_tool_on_checkpoint_reproduces_training_eval(trained_run: tuple[Path, Path], tmp_path: Path) -> None:
    config, work_dir = trained_run
    eval_tool = load_script("tools/eval.py")
    args = [
        "--config",
        str(config),
        "--checkpoint",
        str(work_dir / "checkpoints" / "last.pth"),
        "--out-dir",
        str(tmp_path),
        "--no-progress",
    ]
    assert eval_tool.main(args) == 0
    ours = json.loads((tmp_path / "metrics.json").read_text())
    training = json.loads((work_dir / "eval" / "metrics.json").read_text())
    assert {key: ours[key] for key in training} == training  # plus what produced them:
    assert ours["checkpoint"] == str(work_dir / "checkpoints" / "last.pth") and ours["epoch"] == 2


def test_resume_after_an_epoch_ends_with_the_same_weights(tiny_config: Callable[..., Path], tmp_path: Path) -> None:
    config = tiny_config()
    straight = Trainer.from_config(load_config(config), tmp_path / "straight", progress=False)
    straight.fit()
    Trainer.from_config(load_config(config, ["solver.epochs=1"]), tmp_path / "split", progress=False).fit()
    resumed = Trainer.from_config(load_config(config), tmp_path / "split", resume=True, progress=False)
    assert resumed.epoch == 1 and resumed.iteration == 3
    resumed.fit()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed.optimizer.param_groups[0]["lr"] == straight.optimizer.param_groups[0]["lr"]


def test_train_cli_runs_in_a_subprocess(tiny_config: Callable[..., Path], tmp_path: Path) -> None:
    config = tiny_config()
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "train.py"),
            "--config",
            str(config),
            "--work-dir",
            str(tmp_path / "w"),
            "--no-progress",
            "solver.epochs=1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "AP50" in result.stderr  # the metrics table is logged
    assert (tmp_path / "w" / "checkpoints" / "last.pth").is_file()
