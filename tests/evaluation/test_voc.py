"""Tests for centernet.evaluation.voc: hand-computed PR curves and a brute-force devkit reference."""

from __future__ import annotations

import random

import numpy as np
import pytest

from centernet.evaluation.coco import detections_to_coco_records
from centernet.evaluation.voc import (
    coco_records_to_voc_detections,
    evaluate_voc,
    voc07_ap,
    voc_area_ap,
    voc_box_iou,
)

ONE_CLASS = ["obj"]


def gt_image(image_id, boxes, labels=None, difficult=None):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    count = boxes.shape[0]
    return {
        "image_id": image_id,
        "boxes": boxes,
        "labels": np.zeros(count, dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64),
        "difficult": np.zeros(count, dtype=bool) if difficult is None else np.asarray(difficult, dtype=bool),
    }


def det(image_id, bbox, score, label=0):
    return {"image_id": image_id, "label": label, "bbox": list(bbox), "score": score}


def both_metrics(gt, dets, class_names=ONE_CLASS, **kwargs):
    return (
        evaluate_voc(gt, dets, class_names=class_names, use_07_metric=True, **kwargs),
        evaluate_voc(gt, dets, class_names=class_names, use_07_metric=False, **kwargs),
    )


# ---------------------------------------------------------------- IoU convention


def test_iou_plus_one_convention_exact_half():
    # GT [0,0,9,9] covers 10x10 = 100 pixels; det [0,0,9,4] covers 10x5 = 50 pixels, all inside -> 50/100.
    # Continuous coordinates would give (9*4)/(9*9) = 36/81.
    gt_box, det_box = [[0, 0, 9, 9]], [[0, 0, 9, 4]]
    assert voc_box_iou(det_box, gt_box)[0, 0] == 0.5
    assert voc_box_iou(det_box, gt_box, pixel_offset=0.0)[0, 0] == pytest.approx(36 / 81)
    # Disjoint boxes that touch under the inclusive convention: [0..4] and [5..9] share no pixel.
    assert voc_box_iou([[0, 0, 4, 4]], [[5, 0, 9, 4]])[0, 0] == 0.0
    assert voc_box_iou(np.zeros((0, 4)), gt_box).shape == (0, 1)


def test_match_at_iou_boundary_is_inclusive():
    gt = [gt_image(0, [[0, 0, 9, 9]])]
    dets = [det(0, [0, 0, 9, 4], 0.9)]
    assert evaluate_voc(gt, dets, class_names=ONE_CLASS, use_07_metric=False)["mAP"] == 1.0  # IoU 0.5 >= 0.5
    assert evaluate_voc(gt, dets, class_names=ONE_CLASS, use_07_metric=False, iou_threshold=0.51)["mAP"] == 0.0
    assert evaluate_voc(gt, dets, class_names=ONE_CLASS, use_07_metric=False, pixel_offset=0.0)["mAP"] == 0.0


# ---------------------------------------------------------------- hand-computed PR curve


def test_hand_computed_three_gt_four_dets():
    # Image 0: A=[0,0,9,9], B=[20,20,29,29]; image 1: C=[0,0,19,19]  -> 3 positives.
    gt = [gt_image(0, [[0, 0, 9, 9], [20, 20, 29, 29]]), gt_image(1, [[0, 0, 19, 19]])]
    dets = [  # given out of score order on purpose
        det(0, [21, 21, 29, 29], 0.6),  # d4: IoU(B) = 81/100 -> TP
        det(0, [0, 0, 9, 9], 0.9),  # d1: IoU(A) = 1 -> TP
        det(1, [1, 1, 19, 19], 0.7),  # d3: IoU(C) = 361/400 -> TP
        det(0, [0, 0, 9, 3], 0.8),  # d2: IoU(A) = 40/100 < 0.5 -> FP
    ]
    # Ranked: TP, FP, TP, TP. recall = 1/3, 1/3, 2/3, 1; precision = 1, 1/2, 2/3, 3/4.
    # 11-point: t = 0, .1, .2, .3 -> max prec at recall >= t = 1 (4 points);
    #           t = .4 ... 1.0    -> max(2/3, 3/4) = 3/4 (7 points)  => (4 + 7 * 3/4) / 11 = 37/44.
    # Area: envelope = 1, 3/4, 3/4, 3/4; recall steps 1/3 each at precision 1, 3/4, 3/4 => 1/3 + 1/4 + 1/4 = 5/6.
    voc07, voc = both_metrics(gt, dets)
    assert voc07["metric"] == "voc07" and voc["metric"] == "voc"
    assert voc07["per_class"]["obj"] == pytest.approx(37 / 44, abs=1e-12)
    assert voc["per_class"]["obj"] == pytest.approx(5 / 6, abs=1e-12)
    assert voc07["mAP"] == voc07["per_class"]["obj"]


def test_ap_functions_direct_and_empty():
    recall = np.array([1 / 3, 1 / 3, 2 / 3, 1.0])
    precision = np.array([1.0, 0.5, 2 / 3, 0.75])
    assert voc07_ap(recall, precision) == pytest.approx(37 / 44)
    assert voc_area_ap(recall, precision) == pytest.approx(5 / 6)
    assert voc07_ap(np.zeros(0), np.zeros(0)) == 0.0
    assert voc_area_ap(np.zeros(0), np.zeros(0)) == 0.0
    # Recall exactly 0.3 must count for t = 0.3 (thresholds are i/10, not cumulated 0.1 steps).
    assert voc07_ap(np.array([0.3]), np.array([1.0])) == pytest.approx(4 / 11)


def test_score_ties_keep_input_order():
    gt = [gt_image(0, [[0, 0, 9, 9]])]
    hit, miss = det(0, [0, 0, 9, 9], 0.5), det(0, [50, 50, 59, 59], 0.5)
    # [hit, miss]: TP then FP -> recall 1 reached at precision 1 -> AP 1.
    voc07, voc = both_metrics(gt, [hit, miss])
    assert voc07["mAP"] == 1.0 and voc["mAP"] == 1.0
    # [miss, hit]: FP then TP -> recall 1 only at precision 1/2 -> AP 1/2 under both metrics.
    voc07, voc = both_metrics(gt, [miss, hit])
    assert voc07["mAP"] == pytest.approx(0.5) and voc["mAP"] == pytest.approx(0.5)


# ---------------------------------------------------------------- difficult, duplicates, missing classes


def test_difficult_match_is_ignored():
    # Image 0: N (normal) and D (difficult). d1 hits D (ignored), d2 hits N (TP) -> 1 positive, AP 1.
    gt = [gt_image(0, [[0, 0, 9, 9], [30, 30, 39, 39]], difficult=[False, True])]
    dets = [det(0, [30, 30, 39, 39], 0.9), det(0, [0, 0, 9, 9], 0.8), det(0, [30, 30, 39, 39], 0.7)]
    voc07, voc = both_metrics(gt, dets)
    assert voc07["mAP"] == 1.0 and voc["mAP"] == 1.0
    # If D were not difficult the same detections give TP, TP, FP -> 2 positives, AP 1 as well; so check that
    # a miss in d1's place (FP first) does lower AP: FP, TP -> precision 1/2 at recall 1.
    dets_fp = [det(0, [60, 60, 69, 69], 0.9), det(0, [0, 0, 9, 9], 0.8)]
    assert evaluate_voc(gt, dets_fp, class_names=ONE_CLASS, use_07_metric=False)["mAP"] == pytest.approx(0.5)


def test_difficult_only_image():
    # Image 1 holds only a difficult box: a detection on it is ignored, a miss in it is an FP.
    gt = [gt_image(0, [[0, 0, 9, 9]]), gt_image(1, [[0, 0, 9, 9]], difficult=[True])]
    ignored = [det(1, [0, 0, 9, 9], 0.9), det(0, [0, 0, 9, 9], 0.8)]
    assert evaluate_voc(gt, ignored, class_names=ONE_CLASS, use_07_metric=True)["mAP"] == 1.0
    missed = [det(1, [40, 40, 49, 49], 0.9), det(0, [0, 0, 9, 9], 0.8)]
    assert evaluate_voc(gt, missed, class_names=ONE_CLASS, use_07_metric=True)["mAP"] == pytest.approx(0.5)


def test_duplicate_detection_is_false_positive():
    # G1, G2 far apart. Ranked: hit G1 (TP), hit G1 again (FP), hit G2 (TP).
    # recall .5, .5, 1; precision 1, 1/2, 2/3.
    # 11-point: t = 0..0.5 -> 1 (6 points), t = .6..1 -> 2/3 (5 points) => (6 + 10/3) / 11 = 28/33.
    # Area: 1/2 * 1 + 1/2 * 2/3 = 5/6.
    gt = [gt_image(0, [[0, 0, 9, 9], [40, 40, 49, 49]])]
    dets = [det(0, [0, 0, 9, 9], 0.9), det(0, [0, 0, 9, 8], 0.8), det(0, [40, 40, 49, 49], 0.7)]
    voc07, voc = both_metrics(gt, dets)
    assert voc07["mAP"] == pytest.approx(28 / 33)
    assert voc["mAP"] == pytest.approx(5 / 6)


def test_best_gt_already_claimed_is_false_positive_devkit_rule():
    # G1=[0,0,9,9], G2=[0,2,9,11]. d2=[0,0,9,10]: IoU(G1) = 100/110, IoU(G2) = 90/120 = 0.75.
    # Its best GT (G1) is already claimed by d1, so it is an FP even though G2 (unclaimed) overlaps >= 0.5.
    gt = [gt_image(0, [[0, 0, 9, 9], [0, 2, 9, 11]])]
    dets = [det(0, [0, 0, 9, 9], 0.9), det(0, [0, 0, 9, 10], 0.8)]
    # TP, FP -> recall .5, .5; precision 1, .5 -> area AP = 1/2; 11-point = 6/11.
    voc07, voc = both_metrics(gt, dets)
    assert voc["mAP"] == pytest.approx(0.5)
    assert voc07["mAP"] == pytest.approx(6 / 11)


def test_class_without_gt_is_none_and_excluded():
    gt = [gt_image(0, [[0, 0, 9, 9]], labels=[0]), gt_image(1, [[0, 0, 9, 9]], labels=[2], difficult=[True])]
    dets = [det(0, [0, 0, 9, 9], 0.9, label=0), det(0, [0, 0, 9, 9], 0.8, label=1), det(1, [0, 0, 9, 9], 0.7, label=2)]
    result = evaluate_voc(gt, dets, class_names=["a", "b", "c"], use_07_metric=False)
    assert result["per_class"] == {"a": 1.0, "b": None, "c": None}  # "c" has only a difficult box
    assert result["mAP"] == 1.0


def test_empty_detections_and_empty_ground_truth():
    gt = [gt_image(0, [[0, 0, 9, 9]], labels=[0]), gt_image(1, np.zeros((0, 4)))]
    for result in both_metrics(gt, [], class_names=["a", "b"]):
        assert result["per_class"] == {"a": 0.0, "b": None}
        assert result["mAP"] == 0.0
    result = evaluate_voc([], [], class_names=["a"], use_07_metric=True)
    assert result == {"metric": "voc07", "mAP": None, "per_class": {"a": None}}


def test_errors_name_the_problem():
    gt = [gt_image(0, [[0, 0, 9, 9]])]
    with pytest.raises(ValueError, match=r"detections\[0\].*image_id 7"):
        evaluate_voc(gt, [det(7, [0, 0, 1, 1], 0.5)], class_names=ONE_CLASS, use_07_metric=True)
    with pytest.raises(ValueError, match=r"detections\[0\].*'label'"):
        evaluate_voc(gt, [det(0, [0, 0, 1, 1], 0.5, label=3)], class_names=ONE_CLASS, use_07_metric=True)
    with pytest.raises(ValueError, match="coco_records_to_voc_detections"):
        record = {"image_id": 0, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}
        evaluate_voc(gt, [record], class_names=ONE_CLASS, use_07_metric=True)
    with pytest.raises(ValueError, match=r"ground_truth\[1\].*repeats"):
        evaluate_voc(gt + gt, [], class_names=ONE_CLASS, use_07_metric=True)
    with pytest.raises(ValueError, match=r"ground_truth\[0\].*'labels'"):
        evaluate_voc([gt_image(0, [[0, 0, 9, 9]], labels=[1])], [], class_names=ONE_CLASS, use_07_metric=True)


# ---------------------------------------------------------------- COCO-results adapter


def test_coco_records_round_trip():
    dets = np.array([[1.5, 2.0, 10.25, 20.5, 0.9, 1], [0.0, 0.0, 4.0, 4.0, 0.3, 0]])
    records = detections_to_coco_records(5, "a.jpg", dets, label_to_category_id=[3, 7], category_names=["x", "y"])
    converted = coco_records_to_voc_detections(records, {3: 0, 7: 1})
    assert [d["label"] for d in converted] == [1, 0]
    np.testing.assert_allclose([d["bbox"] for d in converted], dets[:, :4])
    assert [d["image_id"] for d in converted] == [5, 5]
    assert coco_records_to_voc_detections([], {}) == []
    with pytest.raises(ValueError, match=r"record 0: category_id 3"):
        coco_records_to_voc_detections(records[1:] + records[:1], {7: 1})


# ---------------------------------------------------------------- brute-force reference


def reference_voc(gt, dets, num_classes, use_07, threshold=0.5):
    """Scalar, loop-only devkit reference: returns the per-class AP list (None when no positives)."""

    def iou(a, b):
        iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
        ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
        if iw <= 0 or ih <= 0:
            return 0.0
        inter = iw * ih
        union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter
        return inter / union

    aps = []
    for c in range(num_classes):
        objects = {}  # image_id -> list of [box, difficult, claimed]
        npos = 0
        for entry in gt:
            objects[entry["image_id"]] = [
                [list(b), bool(d), False]
                for b, lab, d in zip(entry["boxes"].tolist(), entry["labels"], entry["difficult"])
                if lab == c
            ]
            npos += sum(1 for o in objects[entry["image_id"]] if not o[1])
        ranked = sorted(
            [(i, d) for i, d in enumerate(dets) if d["label"] == c], key=lambda pair: (-pair[1]["score"], pair[0])
        )
        flags = []  # True = TP, False = FP (ignored detections are skipped)
        for _, d in ranked:
            best, best_o = -1.0, None
            for o in objects[d["image_id"]]:
                value = iou(d["bbox"], o[0])
                if value > best:
                    best, best_o = value, o
            if best_o is not None and best >= threshold:
                if best_o[1]:
                    continue
                flags.append(not best_o[2])
                best_o[2] = True
            else:
                flags.append(False)
        if npos == 0:
            aps.append(None)
            continue
        tp = fp = 0
        rec, prec = [], []
        for f in flags:
            tp, fp = tp + f, fp + (not f)
            rec.append(tp / npos)
            prec.append(tp / (tp + fp))
        if use_07:
            aps.append(sum(max([p for r, p in zip(rec, prec) if r >= t / 10], default=0.0) for t in range(11)) / 11)
        else:  # each TP adds 1/npos of recall at the best precision reachable from its rank onwards
            aps.append(sum(max(prec[k:]) for k, f in enumerate(flags) if f) / npos)
    return aps


def random_case(rng, num_images, num_classes):
    gt, dets = [], []
    for image_id in range(num_images):
        n = rng.randint(0, 4)
        boxes = []
        for _ in range(n):
            x, y = rng.randint(0, 20), rng.randint(0, 20)
            boxes.append([x, y, x + rng.randint(3, 14), y + rng.randint(3, 14)])
        labels = [rng.randrange(num_classes) for _ in range(n)]
        difficult = [rng.random() < 0.2 for _ in range(n)]
        gt.append(gt_image(image_id, np.array(boxes, dtype=np.float64).reshape(-1, 4), labels, difficult))
        for _ in range(rng.randint(0, 8)):
            label = rng.randrange(num_classes)
            if boxes and rng.random() < 0.75:  # jitter a GT box (mostly same class): matches and duplicates
                index = rng.randrange(n)
                box = [v + rng.randint(-1, 1) for v in boxes[index]]
                box[2], box[3] = max(box[0], box[2]), max(box[1], box[3])
                label = labels[index] if rng.random() < 0.9 else label
            else:
                x, y = rng.randint(0, 20), rng.randint(0, 20)
                box = [x, y, x + rng.randint(0, 12), y + rng.randint(0, 12)]
            score = round(rng.random(), 1)  # coarse scores -> frequent ties
            dets.append(det(image_id, box, score, label=label))
    return gt, dets


@pytest.mark.parametrize("seed", range(12))
def test_matches_brute_force_reference(seed):
    rng = random.Random(seed)
    num_classes = 3
    gt, dets = random_case(rng, num_images=rng.randint(2, 8), num_classes=num_classes)
    names = [f"c{i}" for i in range(num_classes)]
    for use_07 in (True, False):
        result = evaluate_voc(gt, dets, class_names=names, use_07_metric=use_07)
        expected = reference_voc(gt, dets, num_classes, use_07)
        for name, want in zip(names, expected):
            got = result["per_class"][name]
            assert (got is None) == (want is None), (name, got, want)
            if want is not None:
                assert got == pytest.approx(want, abs=1e-12), (seed, use_07, name)
        defined = [v for v in expected if v is not None]
        if defined:
            assert result["mAP"] == pytest.approx(sum(defined) / len(defined), abs=1e-12)
        else:
            assert result["mAP"] is None
