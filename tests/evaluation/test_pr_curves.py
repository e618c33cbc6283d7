"""Tests for the per-class PR curves (centernet.evaluation.pr_curves) and backend-identical metrics.json."""

from __future__ import annotations

import copy
from pathlib import Path

import cv2
import numpy as np
import pytest

from centernet.evaluation import evaluate_coco, evaluate_coco_with_curves, plot_pr_curves, write_eval_outputs
from tests.evaluation.test_coco import assert_metrics_equal, make_gt, random_detections

NUM_RECALL_POINTS = 101
TREE, BUSH = 1, 2


def one_class_gt() -> dict:
    """One 500x500 image with two trees (xywh) and a category ("bush") without ground truth."""
    return {
        "images": [{"id": 1, "width": 500, "height": 500, "file_name": "a.png"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": TREE, "bbox": [0, 0, 100, 100], "area": 1e4, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": TREE, "bbox": [200, 200, 100, 100], "area": 1e4, "iscrowd": 0},
        ],
        "categories": [{"id": TREE, "name": "tree"}, {"id": BUSH, "name": "bush"}],
    }


def det(bbox: list[float], score: float, category_id: int = TREE) -> dict:
    return {"image_id": 1, "category_id": category_id, "bbox": bbox, "score": score}


@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
def test_hand_computed_curves(backend: str) -> None:
    # Ranked: exact hit on tree 1 (TP), a far false positive, then tree 2 at IoU 0.6 (60 x 100 inside
    # 100 x 100): TP at IoU 0.5, FP at 0.75. A bush detection on a class without ground truth.
    dets = [det([0, 0, 100, 100], 0.9), det([400, 400, 50, 50], 0.8), det([200, 200, 60, 100], 0.7),
            det([10, 10, 20, 20], 0.5, BUSH)]
    metrics, curves = evaluate_coco_with_curves(one_class_gt(), dets, backend=backend)
    assert curves.iou_thresholds == (0.5, 0.75) and curves.class_names == ("tree", "bush")
    assert curves.precision.shape == (2, NUM_RECALL_POINTS, 2)
    np.testing.assert_allclose(curves.recall, np.linspace(0.0, 1.0, NUM_RECALL_POINTS))
    # IoU 0.5: (recall, precision) = (.5, 1), (.5, .5), (1, 2/3); interpolated: 1 up to recall .5, then 2/3.
    expected_50 = np.where(np.arange(NUM_RECALL_POINTS) <= 50, 1.0, 2.0 / 3.0)
    # IoU 0.75: only tree 1 is found: precision 1 up to recall .5, then 0.
    expected_75 = np.where(np.arange(NUM_RECALL_POINTS) <= 50, 1.0, 0.0)
    np.testing.assert_allclose(curves.precision[0, :, 0], expected_50, atol=1e-12)
    np.testing.assert_allclose(curves.precision[1, :, 0], expected_75, atol=1e-12)
    assert np.isnan(curves.precision[:, :, 1]).all()  # bush: no ground truth
    ap = curves.average_precision()
    assert ap[0, 0] == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-12)
    assert ap[1, 0] == pytest.approx(51 / 101, abs=1e-12)
    assert metrics["AP50"] == pytest.approx(ap[0, 0], abs=1e-12)  # the curve is what AP50 averages
    assert metrics["AP75"] == pytest.approx(ap[1, 0], abs=1e-12)
    assert metrics["per_class"]["bush"] is None


def test_unknown_iou_threshold_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"IoU threshold 0.62 was not evaluated"):
        evaluate_coco_with_curves(one_class_gt(), [det([0, 0, 100, 100], 0.9)], iou_thresholds=(0.62,))


def test_plot_writes_a_png(tmp_path: Path) -> None:
    _, curves = evaluate_coco_with_curves(one_class_gt(), [det([0, 0, 100, 100], 0.9)])
    path = tmp_path / "pr_curves.png"
    plot_pr_curves(curves, path)
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0  # not a blank canvas


@pytest.mark.parametrize("seed", [0, 3, 5])
def test_backends_write_identical_metrics_json(seed: int, tmp_path: Path) -> None:
    # The two backends sum precisions in different orders; some metrics differ in the last float bits
    # (e.g. seed 5 here), which the 6-decimal rounding of metrics.json removes.
    gt = make_gt()
    dets = random_detections(gt, seed)
    texts = []
    for backend in ("pycocotools", "faster_coco_eval"):
        out_dir = tmp_path / backend
        write_eval_outputs(out_dir, evaluate_coco(gt, dets, backend=backend), [])
        texts.append((out_dir / "metrics.json").read_text())
    assert texts[0] == texts[1]


@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
def test_zero_based_ids_and_image_without_annotations(backend: str) -> None:
    gt = make_gt()  # image 5 has no annotations
    assert 5 not in {a["image_id"] for a in gt["annotations"]}
    gt_zero = copy.deepcopy(gt)
    for ann in gt_zero["annotations"]:
        ann["id"] -= 1  # ids 0..4
    dets = random_detections(gt, seed=7)  # includes detections on image 5 (false positives there)
    assert any(d["image_id"] == 5 for d in dets)
    assert_metrics_equal(evaluate_coco(gt_zero, dets, backend=backend), evaluate_coco(gt, dets))
