"""Tests for centernet.evaluation.coco: COCO mAP wrapper, record conversion and the metrics table."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from centernet.evaluation import detections_to_coco_records, evaluate_coco, format_metrics_table
from centernet.evaluation.coco import SUMMARY_KEYS
from centernet.evaluation.coco_summary import max_dets_thresholds, summary_stats

CAT, DOG = 3, 7  # non-contiguous category ids
NUM_IOU_THRESHOLDS = 10
NUM_RECALL_POINTS = 101
FLOAT_TOL = 1e-12


def make_gt() -> dict:
    """Three 200x200 images; image 5 has no annotations; one small, three medium/large boxes, one crowd."""
    images = [{"id": i, "width": 200, "height": 200, "file_name": f"img{i}.jpg"} for i in (1, 2, 5)]
    boxes = [  # (image_id, category_id, [x, y, w, h], iscrowd)
        (1, CAT, [10, 10, 20, 20], 0),  # area 400: small
        (1, DOG, [50, 50, 120, 120], 0),  # area 14400: large
        (2, CAT, [20, 30, 50, 50], 0),  # area 2500: medium
        (2, DOG, [100, 100, 60, 60], 0),  # area 3600: medium
        (2, DOG, [0, 120, 80, 80], 1),  # crowd region
    ]
    annotations = [
        {"id": k + 1, "image_id": img, "category_id": cat, "bbox": box, "area": box[2] * box[3], "iscrowd": crowd}
        for k, (img, cat, box, crowd) in enumerate(boxes)
    ]
    categories = [{"id": CAT, "name": "cat"}, {"id": DOG, "name": "dog"}]
    return {"images": images, "annotations": annotations, "categories": categories}


def perfect_detections(gt: dict, score: float = 0.9) -> list[dict]:
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]), "score": score}
        for a in gt["annotations"]
        if not a["iscrowd"]
    ]


def random_detections(gt: dict, seed: int, per_pair: int = 6) -> list[dict]:
    """Jittered copies of the GT boxes plus random boxes on every image (incl. the empty one)."""
    rng = np.random.default_rng(seed)
    dets = []
    for ann in gt["annotations"]:
        x, y, w, h = ann["bbox"]
        for _ in range(3):
            dx, dy, dw, dh = rng.normal(0.0, 0.15, size=4) * [w, h, w, h]
            dets.append(
                {
                    "image_id": ann["image_id"],
                    "category_id": ann["category_id"],
                    "bbox": [x + dx, y + dy, max(1.0, w + dw), max(1.0, h + dh)],
                    "score": float(rng.uniform()),
                }
            )
    for img in gt["images"]:
        for cat in (CAT, DOG):
            for _ in range(per_pair):
                x, y = rng.uniform(0, 150, size=2)
                w, h = rng.uniform(2, 120, size=2)
                dets.append(
                    {"image_id": img["id"], "category_id": cat, "bbox": [x, y, w, h], "score": float(rng.uniform())}
                )
    return dets


def direct_pycocotools(gt: dict, dets: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Plain pycocotools COCOeval on deep copies: (stats[0..8], per-class AP array)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(dets))
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # [T, R, K] at area all, maxDets 100
    per_class = np.array([p[p > -1].mean() for p in np.moveaxis(precision, 2, 0)])
    return np.asarray(evaluator.stats[: len(SUMMARY_KEYS)]), per_class


def assert_metrics_equal(a: dict, b: dict, tol: float = FLOAT_TOL) -> None:
    assert a.keys() == b.keys() and a["per_class"].keys() == b["per_class"].keys()
    for key in SUMMARY_KEYS:
        assert (a[key] is None) == (b[key] is None), key
        if a[key] is not None:
            assert a[key] == pytest.approx(b[key], rel=0.0, abs=tol), key
    for name, value in a["per_class"].items():
        assert value == pytest.approx(b["per_class"][name], rel=0.0, abs=tol), name


@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
def test_perfect_detections_give_ap_one(backend: str) -> None:
    gt = make_gt()
    metrics = evaluate_coco(gt, perfect_detections(gt), backend=backend)
    assert metrics["metric"] == "coco"
    for key in SUMMARY_KEYS:
        assert metrics[key] == pytest.approx(1.0, abs=FLOAT_TOL), key
    assert metrics["per_class"] == pytest.approx({"cat": 1.0, "dog": 1.0}, abs=FLOAT_TOL)


@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
@pytest.mark.parametrize(("width", "expected_ap"), [(58, 2 / 10), (60, 3 / 10), (62, 3 / 10)])
def test_single_box_known_iou(backend: str, width: int, expected_ap: float) -> None:
    # GT [0, 0, 100, 100], detection [0, 0, width, 100]: IoU = width / 100. COCOeval matches when
    # IoU >= threshold, and thresholds are 0.50, 0.55, ..., 0.95 (0.6 is exactly 0.6 in linspace):
    # IoU 0.58 passes 2 of 10 thresholds, IoU 0.60 and 0.62 pass 3. Each passed threshold has
    # precision 1 at all 101 recall points, each failed one 0.
    gt = {
        "images": [{"id": 1, "width": 200, "height": 200}],
        "categories": [{"id": CAT, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": CAT, "bbox": [0, 0, 100, 100], "area": 10000, "iscrowd": 0}
        ],
    }
    dets = [{"image_id": 1, "category_id": CAT, "bbox": [0, 0, width, 100], "score": 0.9}]
    metrics = evaluate_coco(gt, dets, backend=backend)
    assert metrics["AP"] == pytest.approx(expected_ap, abs=FLOAT_TOL)
    assert metrics["AP50"] == pytest.approx(1.0, abs=FLOAT_TOL)
    assert metrics["AP75"] == 0.0
    assert metrics["APl"] == pytest.approx(expected_ap, abs=FLOAT_TOL)
    assert metrics["APs"] is None and metrics["APm"] is None  # no small/medium GT: COCOeval's -1
    assert metrics["AR100"] == pytest.approx(expected_ap, abs=FLOAT_TOL)
    assert metrics["per_class"]["cat"] == pytest.approx(expected_ap, abs=FLOAT_TOL)


def test_hand_computed_interpolated_precision() -> None:
    # dog has 2 GTs. Ranked detections: TP (0.9), FP on the empty image 5 (0.8), TP (0.7).
    # precision [1, 1/2, 2/3] at recall [1/2, 1/2, 1]; interpolated (max to the right): [1, 2/3, 2/3].
    # The 101 recall points 0.00..0.50 (51 points) read 1, the 50 points 0.51..1.00 read 2/3, at every IoU.
    gt = make_gt()
    dets = [d for d in perfect_detections(gt) if d["category_id"] == CAT]
    dets += [
        {"image_id": 1, "category_id": DOG, "bbox": [50, 50, 120, 120], "score": 0.9},
        {"image_id": 5, "category_id": DOG, "bbox": [0, 0, 50, 50], "score": 0.8},
        {"image_id": 2, "category_id": DOG, "bbox": [100, 100, 60, 60], "score": 0.7},
    ]
    expected_dog = (51 * 1.0 + 50 * (2 / 3)) / NUM_RECALL_POINTS
    metrics = evaluate_coco(gt, dets)
    assert metrics["per_class"]["dog"] == pytest.approx(expected_dog, abs=FLOAT_TOL)
    assert metrics["per_class"]["cat"] == pytest.approx(1.0, abs=FLOAT_TOL)
    assert metrics["AP"] == pytest.approx((1.0 + expected_dog) / 2, abs=FLOAT_TOL)


def test_false_positive_ranked_first_and_crowd_region_ignored() -> None:
    gt = make_gt()
    dets = perfect_detections(gt, score=0.5)
    # inside the crowd region of image 2: matched to the crowd box, so ignored (not a false positive)
    crowd_hit = {"image_id": 2, "category_id": DOG, "bbox": [5, 125, 70, 70], "score": 0.99}
    assert evaluate_coco(gt, [*dets, crowd_hit])["AP"] == pytest.approx(1.0, abs=FLOAT_TOL)
    # the same box on the image without annotations is a false positive ranked first:
    # dog precision [0, 1/2, 2/3] -> interpolated 2/3 at every recall point
    miss = dict(crowd_hit, image_id=5)
    metrics = evaluate_coco(gt, [*dets, miss])
    assert metrics["per_class"]["dog"] == pytest.approx(2 / 3, abs=FLOAT_TOL)
    assert metrics["AP"] == pytest.approx((1.0 + 2 / 3) / 2, abs=FLOAT_TOL)


@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
def test_empty_detections_give_zeros(backend: str) -> None:
    metrics = evaluate_coco(make_gt(), [], backend=backend)
    for key in SUMMARY_KEYS:
        assert metrics[key] == 0.0, key
    assert metrics["per_class"] == {"cat": 0.0, "dog": 0.0}


def test_category_without_ground_truth_is_none() -> None:
    gt = make_gt()
    gt["categories"].append({"id": 9, "name": "bird"})
    metrics = evaluate_coco(gt, perfect_detections(gt))
    assert metrics["per_class"]["bird"] is None
    assert metrics["AP"] == pytest.approx(1.0, abs=FLOAT_TOL)
    assert list(metrics["per_class"]) == ["cat", "dog", "bird"]  # category-id order
    json.dumps(metrics, allow_nan=False)  # stays valid JSON


def test_annotation_ids_from_zero_are_renumbered() -> None:
    gt = make_gt()
    gt_zero = copy.deepcopy(gt)
    for ann in gt_zero["annotations"]:
        ann["id"] -= 1  # 0..4
    dets = random_detections(gt, seed=3)
    assert_metrics_equal(evaluate_coco(gt_zero, dets), evaluate_coco(gt, dets))
    perfect = perfect_detections(gt)
    assert evaluate_coco(gt_zero, perfect)["AP"] == pytest.approx(1.0, abs=FLOAT_TOL)
    # plain pycocotools mis-scores the annotation with id 0 (its match is read as "unmatched")
    direct_stats, _ = direct_pycocotools(gt_zero, perfect)
    assert direct_stats[0] < 1.0 - 0.01
    assert [a["id"] for a in gt_zero["annotations"]] == [0, 1, 2, 3, 4]  # caller's data untouched


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_direct_pycocotools(seed: int) -> None:
    gt = make_gt()
    dets = random_detections(gt, seed)
    stats, per_class = direct_pycocotools(gt, dets)
    metrics = evaluate_coco(gt, dets)
    assert [metrics[key] for key in SUMMARY_KEYS] == stats.tolist()  # bit-identical
    assert [metrics["per_class"][name] for name in ("cat", "dog")] == per_class.tolist()
    # per-class AP has T*R entries per class, so the mean over classes is the overall AP
    assert np.mean(list(metrics["per_class"].values())) == pytest.approx(metrics["AP"], abs=FLOAT_TOL)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_faster_coco_eval_matches_pycocotools(seed: int) -> None:
    gt = make_gt()
    dets = random_detections(gt, seed)
    assert_metrics_equal(evaluate_coco(gt, dets, backend="faster_coco_eval"), evaluate_coco(gt, dets))


def test_ground_truth_input_forms_and_no_mutation(tmp_path: Path) -> None:
    gt = make_gt()
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(gt))
    dets = random_detections(gt, seed=5)
    gt_before, dets_before = copy.deepcopy(gt), copy.deepcopy(dets)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_object = COCO(str(path))
    reference = evaluate_coco(gt, dets)
    for form in (str(path), path, coco_object):
        assert_metrics_equal(evaluate_coco(form, dets), reference, tol=0.0)
    assert gt == gt_before and dets == dets_before


def test_quiet_suppresses_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    gt = make_gt()
    evaluate_coco(gt, perfect_detections(gt), quiet=True)
    assert capsys.readouterr().out == ""
    evaluate_coco(gt, perfect_detections(gt), quiet=False)
    assert "Average Precision" in capsys.readouterr().out


def test_errors_name_the_bad_value() -> None:
    gt = make_gt()
    good = perfect_detections(gt)
    with pytest.raises(ValueError, match=r"detections\[4\]: image_id 99 is not in the ground truth"):
        evaluate_coco(gt, [*good, dict(good[0], image_id=99)])
    with pytest.raises(ValueError, match=r"category_id 4 is not in the ground truth"):
        evaluate_coco(gt, [dict(good[0], category_id=4)])
    with pytest.raises(ValueError, match=r"detection record 0: missing key\(s\) \['score'\]"):
        evaluate_coco(gt, [{k: v for k, v in good[0].items() if k != "score"}])
    with pytest.raises(ValueError, match="unknown COCO evaluation backend 'nope'"):
        evaluate_coco(gt, good, backend="nope")


def test_detections_to_coco_records_hand_computed() -> None:
    dets = np.array([[10.0, 20.0, 40.5, 60.25, 0.9, 1], [0.0, 0.0, 5.0, 5.0, 0.123456789, 0]])
    records = detections_to_coco_records(5, "img5.jpg", dets, [CAT, DOG], ["cat", "dog"])
    assert records == [
        {
            "image_id": 5,
            "file_name": "img5.jpg",
            "category_id": DOG,
            "category_name": "dog",
            "bbox": [10.0, 20.0, 30.5, 40.25],
            "score": 0.9,
        },
        {
            "image_id": 5,
            "file_name": "img5.jpg",
            "category_id": CAT,
            "category_name": "cat",
            "bbox": [0.0, 0.0, 5.0, 5.0],
            "score": 0.12346,
        },
    ]


def test_detections_to_coco_records_empty_and_errors() -> None:
    assert detections_to_coco_records(1, "a.jpg", np.zeros((0, 6)), [CAT], ["cat"]) == []
    with pytest.raises(ValueError, match=r"row 1 has label 2.0, expected an integer in \[0, 2\)"):
        detections_to_coco_records(
            1, "a.jpg", np.array([[0, 0, 1, 1, 0.5, 0], [0, 0, 1, 1, 0.5, 2]]), [CAT, DOG], ["cat", "dog"]
        )
    with pytest.raises(ValueError, match=r"shape \[K, 6\]"):
        detections_to_coco_records(1, "a.jpg", np.zeros((2, 5)), [CAT], ["cat"])


def test_records_round_trip_through_evaluation() -> None:
    # GT boxes as decoded xyxy rows -> records -> evaluate: every box found, AP 1
    gt = make_gt()
    label_to_cat, names = [CAT, DOG], ["cat", "dog"]
    records = []
    for img in gt["images"]:
        rows = [
            [x, y, x + w, y + h, 0.8, label_to_cat.index(a["category_id"])]
            for a in gt["annotations"]
            if a["image_id"] == img["id"] and not a["iscrowd"]
            for x, y, w, h in [a["bbox"]]
        ]
        records += detections_to_coco_records(
            img["id"], img["file_name"], np.array(rows).reshape(-1, 6), label_to_cat, names
        )
    assert [r["bbox"] for r in records] == [a["bbox"] for a in gt["annotations"] if not a["iscrowd"]]
    assert evaluate_coco(gt, records)["AP"] == pytest.approx(1.0, abs=FLOAT_TOL)


def test_format_metrics_table() -> None:
    metrics = {
        "metric": "coco",
        "AP": 0.3741,
        "AP50": 0.55,
        "AP75": None,
        "APs": 0.0,
        "APm": 0.1,
        "APl": 1.0,
        "AR1": 0.25,
        "AR10": 0.333,
        "AR100": 0.4,
        "per_class": {"cat": 0.5, "dog": None},
    }
    lines = format_metrics_table(metrics).splitlines()
    assert lines[0].split() == ["metric", "value", "(%)", "(coco)"]
    assert lines[1] == "AP          37.4"
    assert [line.split() for line in lines[2:10]] == [
        ["AP50", "55.0"],
        ["AP75", "-"],
        ["APs", "0.0"],
        ["APm", "10.0"],
        ["APl", "100.0"],
        ["AR1", "25.0"],
        ["AR10", "33.3"],
        ["AR100", "40.0"],
    ]
    assert [line.split() for line in lines[10:]] == [["class", "AP", "(%)"], ["cat", "50.0"], ["dog", "-"]]
    assert len({len(line) for line in lines[1:]}) == 1  # fixed width
    assert format_metrics_table({"metric": "coco", "per_class": {}}).splitlines()[1:] == []


def test_category_restriction_ignores_other_classes() -> None:
    gt = make_gt()
    only_cats = [d for d in perfect_detections(gt) if d["category_id"] == CAT]
    assert evaluate_coco(gt, only_cats)["AP"] < 1.0  # the missed dogs count without the restriction
    restricted = evaluate_coco(gt, only_cats, category_ids=[CAT])
    assert restricted["AP"] == pytest.approx(1.0, abs=FLOAT_TOL)
    assert set(restricted["per_class"]) == {"cat"}
    with pytest.raises(ValueError, match=r"category ids \[999\] are not in the ground truth"):
        evaluate_coco(gt, only_cats, category_ids=[CAT, 999])


def test_summary_stats_equal_cocoeval_and_hold_at_other_max_dets() -> None:
    rng = np.random.default_rng(0)
    images = [{"id": i, "width": 200, "height": 200} for i in (1, 2)]
    annotations, detections = [], []
    for image_id in (1, 2):
        for _ in range(30):
            x, y, w, h = *rng.uniform(0, 150, 2), *rng.uniform(5, 60, 2)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
            detections.append({"image_id": image_id, "category_id": 1, "score": float(rng.uniform()),
                               "bbox": [x + rng.normal(0, 3), y + rng.normal(0, 3), w, h]})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "a"}]}
    gt.createIndex()
    for max_dets in (100, 20):
        evaluator = COCOeval(gt, gt.loadRes(detections), iouType="bbox")
        evaluator.params.maxDets = max_dets_thresholds(max_dets)
        evaluator.evaluate()
        evaluator.accumulate()
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator.summarize()
        stats = summary_stats(evaluator)
        if max_dets == 100:  # COCO's own summary, to the last digit
            np.testing.assert_array_equal(stats, np.asarray(evaluator.stats[:9]))
        else:  # summarize() looks for 100 detections and reports -1; ours counts the best 20 per image
            assert evaluator.stats[0] == -1 and 0 < stats[0] < 1
            assert stats[8] <= 20 / 30 + 1e-9  # at most 20 of an image's 30 objects can be recalled
    with pytest.raises(ValueError, match=r"eval\.max_dets must be > 10, got 10"):
        max_dets_thresholds(10)
