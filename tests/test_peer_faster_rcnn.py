"""benchmarks/peer_faster_rcnn.py: torchvision's Faster R-CNN trained beside our recipe and scored by our evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from centernet.config import load_config
from tests.conftest import REPO, TINY_CONFIG, load_script

peer = load_script("benchmarks/peer_faster_rcnn.py")


def test_schedule_follows_the_config() -> None:
    cfg = load_config(REPO / "configs" / "trees_efficientnet_lite0.yaml")  # warmup 20, x0.1 after epoch 24
    factors = [peer.lr_factor(step, cfg, 8) for step in (0, 9, 19, 100, 191, 192, 239)]
    assert factors == pytest.approx([1 / 20, 10 / 20, 1.0, 1.0, 1.0, 0.1, 0.1])


def test_targets_keep_valid_boxes_and_shift_labels_past_background() -> None:
    batch = {"boxes": torch.tensor([[[0, 0, 4, 4], [1, 1, 5, 5], [0, 0, 0, 0]]], dtype=torch.float32),
             "labels": torch.tensor([[0, 2, -1]]), "valid": torch.tensor([[True, True, False]]),
             "ignore": torch.tensor([[False, True, False]])}
    (target,) = peer.to_targets(batch)
    assert target["boxes"].tolist() == [[0, 0, 4, 4]] and target["labels"].tolist() == [1]


def pycocotools_ap(ann_file: Path, detections: list[dict]) -> float:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ground_truth = COCO(str(ann_file))
    evaluation = COCOeval(ground_truth, ground_truth.loadRes(detections), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return max(float(evaluation.stats[0]), 0.0)  # -1: undefined


def test_tiny_run_of_both_models_scored_by_our_evaluation(tiny_shapes: Path, tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    lines = TINY_CONFIG.format(base=REPO / "configs" / "shapes_resnet18.yaml", root=tiny_shapes).splitlines(True)
    two_sets = (f"  val:\n    - {{name: seen, type: coco, ann_file: {tiny_shapes}/annotations/instances_train.json, "
                f"img_dir: {tiny_shapes}/train}}\n    - {{name: held_out, type: coco, ann_file: "
                f"{tiny_shapes}/annotations/instances_val.json, img_dir: {tiny_shapes}/val}}\n")
    config.write_text("".join(two_sets if line.startswith("  val:") else line for line in lines))
    work = tmp_path / "peer"
    argv = ["--config", str(config), "--seeds", "0", "--work-dir", str(work), "--sets", "held_out", "solver.epochs=1"]
    assert peer.main(argv) == 0
    rows = [json.loads(line) for line in (work / "runs.jsonl").read_text().splitlines()]
    assert [(row["model"], row["seed"], row["steps"]) for row in rows] == [("centernet", 0, 3), ("faster_rcnn", 0, 3)]
    assert all(row["train_s"] > 0 for row in rows)
    # Faster R-CNN's detections, in original-image pixels, re-scored by pycocotools give the row's AP
    out = work / "seed0" / "faster_rcnn" / "eval" / "held_out"
    detections = json.loads((out / "detections.json").read_text())
    assert detections and all(len(d["bbox"]) == 4 and d["score"] >= peer.SCORE_FLOOR for d in detections)
    assert len({d["image_id"] for d in detections}) <= 4 and max(d["bbox"][0] for d in detections) < 64
    assert pycocotools_ap(tiny_shapes / "annotations" / "instances_val.json", detections) == pytest.approx(
        rows[1]["metrics"]["held_out"]["AP"], abs=1e-6)
    table = (work / "peer.md").read_text()
    assert "| centernet | 1 |" in table and "| faster_rcnn | 1 |" in table
    stamp = (work / "runs.jsonl").stat().st_mtime_ns
    assert peer.main(argv) == 0  # both runs recorded: nothing trains again
    assert (work / "runs.jsonl").stat().st_mtime_ns == stamp
    with pytest.raises(SystemExit, match=r"--sets nowhere: .* has the validation sets \['seen', 'held_out'\]"):
        peer.main([*argv[:-3], "--sets", "nowhere"])


def test_faster_rcnn_training_resumes_after_its_last_epoch(tiny_config, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    import logging

    cfg = load_config(tiny_config(), ["solver.epochs=2"])  # 12 images, batch 4: 3 steps per epoch
    run_dir = tmp_path / "run"
    model = peer.build_faster_rcnn(cfg, 5)
    first = peer.train_faster_rcnn(cfg, model, 0.01, 3, run_dir)  # one epoch, then "stopped"
    state = torch.load(run_dir / "faster_rcnn_last.pth", weights_only=False)
    assert state["epoch"] == 1 and state["seconds"] == pytest.approx(first)
    resumed = peer.build_faster_rcnn(cfg, 5)
    with caplog.at_level(logging.INFO, logger="centernet.benchmarks.peer_faster_rcnn"):
        total = peer.train_faster_rcnn(cfg, resumed, 0.01, 6, run_dir)
    assert "resuming after epoch 1" in caplog.text and total > first
    state = torch.load(run_dir / "faster_rcnn_last.pth", weights_only=False)
    assert state["epoch"] == 2 and state["schedule"]["last_epoch"] == 6  # the schedule went on from step 3
