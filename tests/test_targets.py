"""Tests for centernet.targets: radius formulas and batched target rendering."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from centernet.targets import RADIUS_FORMULAS, gaussian_radius, gaussian_radius_tensor, render_targets
from centernet.utils.affine import apply_affine_to_boxes, get_affine_transform


def _render(boxes, labels=None, valid=None, *, size=(10, 10), num_classes=1, **kwargs):
    """Render one image's boxes ([M, 4] lists) and return the targets of that image."""
    boxes_t = torch.tensor(boxes, dtype=torch.float32).reshape(1, -1, 4)
    m = boxes_t.shape[1]
    labels_t = torch.tensor(labels if labels is not None else [0] * m, dtype=torch.int64).reshape(1, m)
    valid_t = torch.tensor(valid if valid is not None else [True] * m).reshape(1, m)
    out = render_targets(boxes_t, labels_t, valid_t, num_classes=num_classes, output_size=size, **kwargs)
    return {key: value[0] for key, value in out.items()}


def _loop_reference(boxes, labels, valid, num_classes, size, formula):
    """Straightforward per-object numpy renderer of the CenterNet heatmap (independent reference)."""
    height, width = size
    heat = np.zeros((boxes.shape[0], num_classes, height, width), dtype=np.float32)
    ys, xs = np.mgrid[0:height, 0:width]
    for b in range(boxes.shape[0]):
        for m in range(boxes.shape[1]):
            x1, x2 = np.clip(boxes[b, m, [0, 2]], 0, width - 1)
            y1, y2 = np.clip(boxes[b, m, [1, 3]], 0, height - 1)
            w, h = x2 - x1, y2 - y1
            if not valid[b, m] or w <= 0 or h <= 0:
                continue
            r = max(0, int(gaussian_radius(math.ceil(h), math.ceil(w), 0.7, formula)))
            cx, cy = int((x1 + x2) / np.float32(2)), int((y1 + y2) / np.float32(2))
            sigma = (2 * r + 1) / 6
            g = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma * sigma))
            g[(np.abs(xs - cx) > r) | (np.abs(ys - cy) > r)] = 0
            heat[b, labels[b, m]] = np.maximum(heat[b, labels[b, m]], g)
    return heat


# ---------------------------------------------------------------- radius


def test_radius_matches_original_golden(golden):
    radius = [gaussian_radius(math.ceil(h), math.ceil(w)) for h, w in golden["radius_hw"]]
    np.testing.assert_allclose(radius, golden["radius"], atol=1e-5, rtol=0)


def test_radius_hand_computed_square():
    # h = w = 10, o = 0.7. Original: third quadratic a3 = 2.8, b3 = -28, c3 = -30 -> (b3 + sqrt(1120)) / 2.
    assert gaussian_radius(10, 10) == pytest.approx((math.sqrt(1120) - 28) / 2, abs=1e-12)
    # Corrected: "both corners inside" binds: (10 - 2r)^2 = 0.7 * 100 -> r = (10 - sqrt(70)) / 2.
    assert gaussian_radius(10, 10, formula="cornernet") == pytest.approx((10 - math.sqrt(70)) / 2, abs=1e-12)
    # The original is ~3.35x the corrected radius (see _radius_centernet).
    ratio = gaussian_radius(10, 10) / gaussian_radius(10, 10, formula="cornernet")
    assert ratio == pytest.approx(3.35, abs=0.01)


@pytest.mark.parametrize(("h", "w", "o"), [(10, 10, 0.7), (3, 40, 0.7), (57, 8, 0.5), (1, 1, 0.9)])
def test_cornernet_radius_is_the_tight_bound(h, w, o):
    r = gaussian_radius(h, w, o, formula="cornernet")
    one_corner = (w - r) * (h - r) / (2 * w * h - (w - r) * (h - r))
    both_inside = (w - 2 * r) * (h - 2 * r) / (w * h)
    both_outside = w * h / ((w + 2 * r) * (h + 2 * r))
    # Every case keeps IoU >= o and at least one of them reaches it exactly.
    assert min(one_corner, both_inside, both_outside) == pytest.approx(o, abs=1e-9)


def test_radius_tensor_matches_scalar():
    h = torch.tensor([1.0, 5.0, 17.0, 120.0], dtype=torch.float64)
    w = torch.tensor([2.0, 5.0, 3.0, 64.0], dtype=torch.float64)
    for formula in RADIUS_FORMULAS:
        got = gaussian_radius_tensor(h, w, 0.7, formula)
        expected = [gaussian_radius(float(a), float(b), 0.7, formula) for a, b in zip(h, w)]
        np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=0)
    assert gaussian_radius_tensor(h[:0], w[:0]).shape == (0,)


def test_unknown_radius_formula_lists_valid_names():
    with pytest.raises(ValueError, match=r"'ellipse'.*centernet.*cornernet"):
        gaussian_radius(4, 4, formula="ellipse")
    with pytest.raises(ValueError, match="min_overlap"):
        gaussian_radius(4, 4, min_overlap=1.5)
    with pytest.raises(ValueError, match="cornernet"):
        render_targets(
            torch.zeros(1, 1, 4),
            torch.zeros(1, 1, dtype=torch.long),
            torch.ones(1, 1, dtype=bool),
            num_classes=1,
            output_size=(4, 4),
            radius_formula="nope",
        )


# ---------------------------------------------------------------- rendering: hand-computed cases


def test_single_box_hand_computed():
    # w = h = 10 -> r = int(2.733) = 2, sigma = 5/6, 2 sigma^2 = 25/18 -> g = exp(-0.72 (dx^2 + dy^2)).
    out = _render([[3.5, 4.25, 13.5, 14.25]], [1], size=(20, 20), num_classes=2)
    expected = np.zeros((2, 20, 20), dtype=np.float32)
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            expected[1, 9 + dy, 8 + dx] = math.exp(-0.72 * (dx * dx + dy * dy))
    np.testing.assert_allclose(out["heatmap"].numpy(), expected, rtol=0, atol=1e-7)
    assert out["heatmap"][1, 9, 8] == 1.0
    assert out["size"].tolist() == [[10.0, 10.0]]
    assert out["offset"].tolist() == [[0.5, 0.25]]
    assert out["index"].tolist() == [9 * 20 + 8]
    assert out["mask"].tolist() == [1.0]
    assert torch.equal(out["heatmap_mask"], torch.ones(1, 20, 20))
    assert out["heatmap"].dtype == out["size"].dtype == out["heatmap_mask"].dtype == torch.float32
    assert out["index"].dtype == torch.int64


def test_cornernet_formula_gives_single_cell_peak():
    # Corrected radius for 10x10 is 0.82 -> r = 0: the target is one cell.
    out = _render([[3.5, 4.25, 13.5, 14.25]], size=(20, 20), radius_formula="cornernet")
    assert out["heatmap"].sum() == 1.0 and out["heatmap"][0, 9, 8] == 1.0


def test_clipping_to_the_grid():
    # H = 8, W = 10. Clipped to (0, 0, 3, 5): centre (1.5, 2.5), radius(5, 3) = 1.03 -> r = 1, sigma = 0.5.
    out = _render([[-4.0, -2.0, 3.0, 5.0]], size=(8, 10))
    assert gaussian_radius(5, 3) == pytest.approx(1.0302, abs=1e-4)
    assert out["size"].tolist() == [[3.0, 5.0]]
    assert out["offset"].tolist() == [[0.5, 0.5]]
    assert out["index"].tolist() == [2 * 10 + 1]
    heat = out["heatmap"][0]
    assert heat[2, 1] == 1.0
    assert heat[2, 2].item() == pytest.approx(math.exp(-2.0), abs=1e-7)  # exp(-1 / (2 * 0.25))
    assert heat[3, 2].item() == pytest.approx(math.exp(-4.0), abs=1e-7)
    assert int((heat > 0).sum()) == 9


def test_gaussian_window_cut_by_the_border(monkeypatch):
    # A registered formula with a fixed radius 3 puts the window over the top-left corner.
    monkeypatch.setitem(RADIUS_FORMULAS, "fixed3", lambda h, w, o: torch.full_like(h, 3.0))
    out = _render([[0.0, 0.0, 2.5, 2.5]], size=(6, 6), radius_formula="fixed3")
    sigma = 7 / 6
    ys, xs = np.mgrid[0:6, 0:6]
    # Centre (1.25, 1.25) -> ct_int (1, 1); the window [-2, 4]^2 loses its top and left rows.
    expected = np.exp(-((xs - 1) ** 2 + (ys - 1) ** 2) / (2 * sigma * sigma))
    expected[(xs > 4) | (ys > 4)] = 0
    np.testing.assert_allclose(out["heatmap"][0].numpy(), expected, rtol=0, atol=1e-7)


def test_degenerate_and_padding_boxes_are_dropped():
    boxes = [
        [3.0, 3.0, 3.0, 8.0],  # zero width
        [12.0, 12.0, 15.0, 15.0],  # entirely outside: clipped to a point
        [2.0, 8.0, 6.0, 4.0],  # inverted
        [float("nan")] * 4,  # padding with garbage
        [1.0, 1.0, 5.0, 5.0],  # the one real box
    ]
    out = _render(boxes, [0, 0, 0, 99, 0], [True, True, True, False, True])
    assert out["mask"].tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]
    assert torch.equal(out["size"][:4], torch.zeros(4, 2))
    assert torch.equal(out["offset"][:4], torch.zeros(4, 2))
    assert out["index"][:4].tolist() == [0, 0, 0, 0]
    alone = _render([[1.0, 1.0, 5.0, 5.0]])
    assert torch.equal(out["heatmap"], alone["heatmap"])


def test_same_class_overlap_merged_by_max():
    boxes = [[2.0, 2.0, 12.0, 12.0], [4.0, 3.0, 14.0, 13.0]]  # peaks (7, 7) and (9, 8), r = 2 each
    both = _render(boxes, size=(16, 16))["heatmap"]
    first = _render(boxes[:1], size=(16, 16))["heatmap"]
    second = _render(boxes[1:], size=(16, 16))["heatmap"]
    assert torch.equal(both, torch.maximum(first, second))
    # Cell (8, 7) (x, y): 1 step from the first peak, (1, 1) from the second -> max, not sum.
    assert both[0, 7, 8].item() == pytest.approx(math.exp(-0.72), abs=1e-7)
    assert both[0, 7, 7] == 1.0 and both[0, 8, 9] == 1.0
    other_class = _render(boxes, [0, 1], size=(16, 16), num_classes=2)["heatmap"]
    assert torch.equal(other_class[0], first[0]) and torch.equal(other_class[1], second[0])


def test_ignore_region_mask():
    boxes = [
        [2.5, 3.2, 5.1, 6.0],  # ignore: cells x 2..6, y 3..6
        [-3.0, 8.5, 1.5, 20.0],  # ignore, clipped to (0, 8.5, 1.5, 9): cells x 0..2, y 8..9
        [11.0, 11.0, 12.0, 12.0],  # ignore entirely outside: dropped, masks nothing
        [6.0, 0.0, 9.0, 2.0],  # ordinary object
    ]
    ignore = torch.tensor([[True, True, True, False]])
    out = _render(boxes, ignore=ignore)
    expected = np.ones((10, 10), dtype=np.float32)
    expected[3:7, 2:7] = 0
    expected[8:10, 0:3] = 0
    np.testing.assert_array_equal(out["heatmap_mask"][0].numpy(), expected)
    assert out["mask"].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert torch.equal(out["heatmap"], _render(boxes[3:])["heatmap"])  # ignore boxes draw nothing


# ---------------------------------------------------------------- empty, errors, reference


def test_empty_inputs():
    out = render_targets(
        torch.zeros(3, 0, 4),
        torch.zeros(3, 0, dtype=torch.long),
        torch.zeros(3, 0, dtype=bool),
        num_classes=4,
        output_size=(5, 7),
        ignore=torch.zeros(3, 0, dtype=bool),
    )
    assert out["heatmap"].shape == (3, 4, 5, 7) and not out["heatmap"].any()
    assert out["size"].shape == out["offset"].shape == (3, 0, 2)
    assert out["index"].shape == out["mask"].shape == (3, 0)
    assert torch.equal(out["heatmap_mask"], torch.ones(3, 1, 5, 7))
    none = render_targets(
        torch.zeros(0, 2, 4),
        torch.zeros(0, 2, dtype=torch.long),
        torch.zeros(0, 2, dtype=bool),
        num_classes=2,
        output_size=(4, 4),
    )
    assert none["heatmap"].shape == (0, 2, 4, 4)


def test_input_errors_name_the_problem():
    boxes, valid = torch.tensor([[[1.0, 1.0, 4.0, 4.0]]]), torch.ones(1, 1, dtype=bool)
    with pytest.raises(ValueError, match=r"labels\[0, 0\] = 3 is outside \[0, 3\)"):
        render_targets(boxes, torch.tensor([[3]]), valid, num_classes=3, output_size=(8, 8))
    with pytest.raises(ValueError, match=r"boxes must be \[B, M, 4\]"):
        render_targets(boxes[0], torch.tensor([[0]]), valid, num_classes=3, output_size=(8, 8))
    with pytest.raises(ValueError, match="valid must be a bool"):
        render_targets(boxes, torch.tensor([[0]]), valid.long(), num_classes=3, output_size=(8, 8))
    # An out-of-range label in a padding slot is fine.
    render_targets(boxes, torch.tensor([[-1]]), ~valid, num_classes=3, output_size=(8, 8))


@pytest.mark.parametrize("formula", sorted(RADIUS_FORMULAS))
def test_matches_per_object_loop_reference(formula):
    gen = torch.Generator().manual_seed(0)
    size, num_classes = (12, 16), 3
    corners = torch.rand(3, 9, 2, 2, generator=gen) * 26 - 5  # [B, M, corner, xy] in [-5, 21)
    boxes = torch.cat((corners.min(2).values, corners.max(2).values), dim=-1)  # [B, M, 4]
    labels = torch.randint(0, num_classes, (3, 9), generator=gen)
    valid = torch.rand(3, 9, generator=gen) > 0.2
    out = render_targets(
        boxes.double(), labels, valid, num_classes=num_classes, output_size=size, radius_formula=formula
    )
    expected = _loop_reference(boxes.numpy(), labels.numpy(), valid.numpy(), num_classes, size, formula)
    np.testing.assert_allclose(out["heatmap"].numpy(), expected, rtol=0, atol=1e-7)
    assert int(out["mask"].sum()) > 10


def test_golden_targets_match_original(golden):
    output = int(golden["t_output"])
    boxes = []
    for (h, w), image_boxes in zip(golden["t_image_hw"], golden["t_boxes_xyxy"]):
        center = np.array([w / 2.0, h / 2.0], dtype=np.float32)
        matrix = get_affine_transform(center, float(max(h, w)), (output, output))
        boxes.append(apply_affine_to_boxes(image_boxes, matrix))
    labels = torch.from_numpy(golden["t_labels"])
    out = render_targets(
        torch.from_numpy(np.stack(boxes)),
        labels,
        labels >= 0,
        num_classes=int(golden["t_num_classes"]),
        output_size=(output, output),
    )
    np.testing.assert_allclose(out["heatmap"].numpy(), golden["t_heatmap"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(out["size"].numpy(), golden["t_size"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(out["offset"].numpy(), golden["t_offset"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(out["index"].numpy(), golden["t_index"])
    np.testing.assert_array_equal(out["mask"].numpy(), golden["t_mask"].astype(np.float32))
