"""Box precision / recall / F1 at a score threshold (DeepForest style) against hand-made matches."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from centernet.config.schema import EvalConfig
from centernet.data.coco import CocoDetection
from centernet.data.voc import VOCDetection
from centernet.evaluation import (
    F1_CURVE_FILENAME,
    detections_from_records,
    ground_truth_from_dataset,
    plot_f1_curve,
    precision_recall_report,
)
from tests.data.test_coco import _write_dataset
from tests.data.test_voc import voc_xml


def gt(*boxes: list[float], ignore: list[bool] | None = None) -> dict:
    return {"boxes": np.array(boxes, dtype=np.float64).reshape(-1, 4), "ignore": ignore}


def dets(*pairs: tuple[list[float], float]) -> dict:
    return {"boxes": np.array([b for b, _ in pairs], dtype=np.float64).reshape(-1, 4),
            "scores": np.array([s for _, s in pairs])}


# Three trees in a row; detections: A exactly (0.9), A again shifted by one pixel (IoU 90/110, 0.8),
# B exactly (0.5), empty ground (0.35), C exactly but below the 0.3 threshold (0.2).
TREES = gt([0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10])
FIVE = dets(([0, 0, 10, 10], 0.9), ([1, 0, 11, 10], 0.8), ([20, 0, 30, 10], 0.5), ([60, 0, 70, 10], 0.35),
            ([40, 0, 50, 10], 0.2))


def test_duplicates_are_false_positives_and_the_threshold_filters() -> None:
    report = precision_recall_report([TREES], [FIVE])
    # counted: A, A again (duplicate: FP), B, empty ground (FP); C is below 0.3 and stays unfound
    assert (report["tp"], report["fp"], report["fn"], report["detections"], report["objects"]) == (2, 2, 1, 4, 3)
    assert report["precision@0.4"] == pytest.approx(0.5)
    assert report["recall@0.4"] == pytest.approx(2 / 3)
    assert report["f1@0.4"] == pytest.approx(4 / 7)  # 2 * 0.5 * 2/3 / (0.5 + 2/3)
    assert (report["score_threshold"], report["iou_threshold"]) == (0.3, 0.4)
    json.dumps(report)  # plain values only


def test_f1_curve_hand_computed() -> None:
    report = precision_recall_report([TREES], [FIVE])
    curve = dict(zip(report["curve"]["thresholds"], report["curve"]["f1"], strict=True))
    assert len(curve) == 100 and min(curve) == 0.0 and max(curve) == 0.99
    expected = {
        0.0: 0.75, 0.2: 0.75,  # all five: TP 3, FP 2 -> P 0.6, R 1
        0.21: 4 / 7, 0.35: 4 / 7,  # without C
        0.36: 2 / 3, 0.5: 2 / 3,  # A, A again, B: P 2/3, R 2/3 (a score equal to the threshold counts)
        0.51: 0.4,  # A and its duplicate: P 0.5, R 1/3
        0.9: 0.5,  # A alone: P 1, R 1/3
        0.91: 0.0, 0.99: 0.0,  # nothing left
    }
    for threshold, f1 in expected.items():
        assert curve[threshold] == pytest.approx(f1), threshold
    assert report["best_f1"] == pytest.approx(0.75)
    assert report["best_f1_threshold"] == 0.0  # the lowest threshold reaching the best F1


def test_iou_must_exceed_the_threshold() -> None:
    half = dets(([0, 0, 10, 5], 0.9))  # IoU exactly 0.5 with the 10 x 10 box
    assert precision_recall_report([gt([0, 0, 10, 10])], [half], iou_threshold=0.5)["tp"] == 0
    assert precision_recall_report([gt([0, 0, 10, 10])], [half], iou_threshold=0.49)["tp"] == 1


def test_ties_in_iou_and_score_give_one_match() -> None:
    # both halves of the box: IoU 0.5 each, same score; one is the match, the other a duplicate
    report = precision_recall_report([gt([0, 0, 10, 10])], [dets(([0, 0, 10, 5], 0.6), ([0, 5, 10, 10], 0.6))])
    assert (report["tp"], report["fp"], report["fn"]) == (1, 1, 0)
    assert report["precision@0.4"] == 0.5 and report["recall@0.4"] == 1.0


def test_assignment_finds_the_most_pairs_where_greedy_by_score_would_not() -> None:
    # d1 (0.9) overlaps A (IoU 80/120 = 0.67) and B (60/140 = 0.43); d2 (0.8) overlaps only A (0.9).
    # Greedy by score gives d1 -> A and leaves d2 unmatched; the assignment pairs d1 -> B and d2 -> A.
    report = precision_recall_report(
        [gt([0, 0, 10, 10], [6, 0, 16, 10])], [dets(([2, 0, 12, 10], 0.9), ([0, 0, 9, 10], 0.8))]
    )
    assert (report["tp"], report["fp"], report["fn"]) == (2, 0, 0)


def test_assignment_prefers_more_pairs_to_more_iou() -> None:
    # d1 fits A (IoU 10/10.5 = 0.95) and B (6.5/14 = 0.46); d2 fits only A (6/14 = 0.43). The largest
    # total IoU would be d1 -> A alone (0.95 > 0.46 + 0.43); the assignment keeps both pairs.
    report = precision_recall_report(
        [gt([0, 0, 10, 10], [4, 0, 14, 10])], [dets(([0, 0, 10.5, 10], 0.9), ([-4, 0, 6, 10], 0.8))]
    )
    assert (report["tp"], report["fp"], report["fn"]) == (2, 0, 0)


def test_nothing_above_the_threshold_reports_zero_with_the_counts() -> None:
    report = precision_recall_report([TREES], [dets(([0, 0, 10, 10], 0.29), ([20, 0, 30, 10], 0.1))])
    assert (report["tp"], report["fp"], report["detections"], report["fn"]) == (0, 0, 0, 3)
    assert report["precision@0.4"] == report["recall@0.4"] == report["f1@0.4"] == 0.0
    assert report["image_mean_precision@0.4"] == 0.0  # no image with detections left
    no_objects = precision_recall_report([gt()], [dets(([0, 0, 5, 5], 0.9))])
    assert (no_objects["objects"], no_objects["fp"], no_objects["recall@0.4"], no_objects["precision@0.4"]) == (
        0, 1, 0.0, 0.0
    )


def test_ignore_regions_are_neither_objects_nor_false_positives() -> None:
    truth = gt([0, 0, 10, 10], [50, 50, 100, 100], ignore=[False, True])
    found = dets(
        ([0, 0, 10, 10], 0.9),  # the tree: TP
        ([60, 60, 70, 70], 0.8),  # inside the ignore region: ignored
        ([50, 50, 100, 100], 0.7),  # the region itself: ignored
        ([95, 95, 105, 105], 0.6),  # a quarter of it inside (0.25 <= 0.4): FP
        ([1, 0, 11, 10], 0.5),  # a duplicate of the tree: FP
    )
    report = precision_recall_report([truth], [found])
    assert (report["tp"], report["fp"], report["ignored"], report["objects"], report["fn"]) == (1, 2, 2, 1, 0)
    assert report["precision@0.4"] == pytest.approx(1 / 3) and report["recall@0.4"] == 1.0


def test_image_means_follow_deepforest_and_pooled_counts_do_not() -> None:
    truth = [gt([0, 0, 10, 10], [20, 0, 30, 10]), gt([0, 0, 10, 10]), gt()]
    found = [
        dets(([0, 0, 10, 10], 0.9), ([60, 0, 70, 10], 0.9)),
        dets(),
        dets(([0, 0, 5, 5], 0.9), ([9, 9, 20, 20], 0.8)),
    ]
    report = precision_recall_report(truth, found)
    assert (report["tp"], report["fp"], report["objects"]) == (1, 3, 3)
    assert report["precision@0.4"] == pytest.approx(0.25) and report["recall@0.4"] == pytest.approx(1 / 3)
    # per image: (P 0.5, R 0.5), (no detections: R 0, no P), (no objects: left out)
    assert report["image_mean_precision@0.4"] == pytest.approx(0.5)
    assert report["image_mean_recall@0.4"] == pytest.approx(0.25)
    assert [(r["tp"], r["fp"], r["fn"], r["objects"], r["precision"], r["recall"]) for r in report["per_image"]] == [
        (1, 1, 1, 2, 0.5, 0.5), (0, 0, 1, 1, 0.0, 0.0), (0, 2, 0, 0, 0.0, 0.0)]


def test_bad_inputs_name_the_image_and_key() -> None:
    with pytest.raises(ValueError, match="ground_truth has 1 images but detections has 2"):
        precision_recall_report([TREES], [FIVE, FIVE])
    with pytest.raises(ValueError, match=r"detections\[1\]\.boxes: expected finite \[N, 4\]"):
        precision_recall_report([TREES, TREES], [FIVE, {"boxes": [[0, 0, 1]], "scores": [1.0]}])
    with pytest.raises(ValueError, match=r"detections\[0\]\.scores: expected 5 values \(one per box\), got 4"):
        precision_recall_report([TREES], [{"boxes": FIVE["boxes"], "scores": FIVE["scores"][:4]}])
    with pytest.raises(ValueError, match=r"ground_truth\[0\]\.ignore: expected 3 values"):
        precision_recall_report([{"boxes": TREES["boxes"], "ignore": [True]}], [FIVE])


def test_from_a_coco_dataset_and_result_records(tmp_path: Path) -> None:
    ann_file, img_dir = _write_dataset(tmp_path)
    dataset = CocoDetection(ann_file, img_dir)
    truth = ground_truth_from_dataset(dataset)
    # image 1: a cat [1, 2, 4, 6], a crowd of cats [10, 5, 18, 11] (ignore region), a bird [20.5, 0, 25, 9]
    np.testing.assert_allclose(truth[0]["boxes"], [[1, 2, 4, 6], [10, 5, 18, 11], [20.5, 0, 25, 9]])
    assert truth[0]["ignore"].tolist() == [False, True, False] and len(truth) == 3
    records = [
        {"image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4], "score": 0.8},  # the cat
        {"image_id": 1, "category_id": 3, "bbox": [11, 6, 4, 4], "score": 0.7},  # inside the crowd
        {"image_id": 2, "category_id": 7, "bbox": [0, 0, 16, 12], "score": 0.2},  # the dog, below 0.3
        {"image_id": 3, "category_id": 7, "bbox": [0, 0, 5, 5], "score": 0.9},  # nothing there
    ]
    found = detections_from_records(records, dataset.image_ids)
    np.testing.assert_allclose(found[0]["boxes"], [[1, 2, 4, 6], [11, 6, 15, 10]])
    defaults = EvalConfig()
    report = precision_recall_report(
        truth, found, iou_threshold=defaults.pr_iou, score_threshold=defaults.score_threshold
    )
    assert (report["tp"], report["fp"], report["ignored"], report["objects"]) == (1, 1, 1, 3)
    assert report["recall@0.4"] == pytest.approx(1 / 3) and report["precision@0.4"] == 0.5
    with pytest.raises(ValueError, match="detection record 0: image_id 9 is not in the dataset"):
        detections_from_records([{"image_id": 9, "bbox": [0, 0, 1, 1], "score": 1.0}], dataset.image_ids)


def test_voc_difficult_objects_are_ignore_regions(tmp_path: Path) -> None:
    root = tmp_path / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    assert cv2.imwrite(str(root / "JPEGImages" / "a.jpg"), np.zeros((20, 30, 3), np.uint8))
    objects = [("dog", 0, 1, 1, 10, 10), ("dog", 1, 15, 5, 25, 15)]  # 1-based inclusive; the second is difficult
    (root / "Annotations" / "a.xml").write_text(voc_xml(20, 30, objects, filename="a.jpg"))
    (root / "ImageSets" / "Main" / "test.txt").write_text("a\n")
    (truth,) = ground_truth_from_dataset(VOCDetection(root, "test"))
    np.testing.assert_allclose(truth["boxes"], [[0, 0, 10, 10], [14, 4, 25, 15]])
    assert truth["ignore"].tolist() == [False, True]


def test_plot_writes_the_f1_curve(tmp_path: Path) -> None:
    path = tmp_path / F1_CURVE_FILENAME
    plot_f1_curve(precision_recall_report([TREES], [FIVE]), path)
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 200 and image.shape[1] > 300
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 10  # lines drawn, not a blank canvas
