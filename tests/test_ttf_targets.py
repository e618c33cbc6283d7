"""Tests for centernet.targets.render_ttf_targets: elliptical heatmaps, dense box targets and weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from centernet.targets import BOX_WEIGHT_MODES, render_ttf_targets

DOWN = 4
GRID = (16, 16)
# One box of 48 x 24 input pixels: on the grid 12 x 6, so radii int(6 * 0.54) = 3 (x), int(3 * 0.54) = 1 (y),
# centre (int(32 / 4), int(16 / 4)) = (8, 4) and area (48 + 1) * (24 + 1) = 1225.
BOX = [8.0, 4.0, 56.0, 28.0]
BOX_AREA = 49 * 25


def _render(boxes, labels=None, *, ignore=None, size=GRID, num_classes=1, **kwargs):
    """Render one image's boxes ([M, 4] lists, input pixels) and return the targets of that image."""
    boxes_t = torch.tensor(boxes, dtype=torch.float32).reshape(1, -1, 4)
    m = boxes_t.shape[1]
    labels_t = torch.tensor(labels if labels is not None else [0] * m, dtype=torch.int64).reshape(1, m)
    ignore_t = None if ignore is None else torch.tensor(ignore).reshape(1, m)
    out = render_ttf_targets(
        boxes_t, labels_t, torch.ones(1, m, dtype=torch.bool), ignore=ignore_t,
        num_classes=num_classes, output_size=size, down_ratio=DOWN, **kwargs,
    )
    return {key: value[0] for key, value in out.items()}


def _window(centre, radius_x, radius_y, size=GRID):
    """The elliptical Gaussian exp(-(dx^2 / 2sx^2 + dy^2 / 2sy^2)), s = (2r + 1) / 6, on [-r, r] per axis."""
    sigma_x, sigma_y = (2 * radius_x + 1) / 6, (2 * radius_y + 1) / 6
    out = np.zeros(size, dtype=np.float64)
    for dy in range(-radius_y, radius_y + 1):
        for dx in range(-radius_x, radius_x + 1):
            x, y = centre[0] + dx, centre[1] + dy
            if 0 <= x < size[1] and 0 <= y < size[0]:
                out[y, x] = math.exp(-(dx * dx / (2 * sigma_x**2) + dy * dy / (2 * sigma_y**2)))
    return out


def test_golden_targets_match_ttfnet(ttf_golden):
    g = ttf_golden
    out = render_ttf_targets(
        torch.from_numpy(g["boxes"]), torch.from_numpy(g["labels"]), torch.from_numpy(g["labels"] >= 0),
        num_classes=int(g["num_classes"]), output_size=(32, 32), down_ratio=int(g["down_ratio"]),
        alpha=float(g["alpha"]), beta=float(g["beta"]),
    )
    np.testing.assert_allclose(out["heatmap"].numpy(), g["heatmap"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["box_target"].numpy(), g["box_target"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(out["box_weight"].numpy(), g["reg_weight"], atol=1e-4, rtol=0)
    assert (out["heatmap_mask"] == 1).all()


def test_single_box_elliptical_heatmap_by_hand():
    out = _render([BOX], num_classes=2, labels=[1])
    expected = _window((8, 4), 3, 1)
    assert expected[4, 9] == pytest.approx(math.exp(-36 / 98))  # dx = 1: exp(-1 / (2 (7/6)^2))
    assert expected[5, 8] == pytest.approx(math.exp(-2))  # dy = 1: exp(-1 / (2 (1/2)^2))
    np.testing.assert_allclose(out["heatmap"][1].numpy(), expected, atol=1e-7)
    assert (out["heatmap"][0] == 0).all()
    covered = torch.from_numpy(expected > 0)
    assert int(covered.sum()) == 7 * 3
    assert (out["box_target"][:, covered] == torch.tensor(BOX)[:, None]).all()
    assert (out["box_target"][:, ~covered] == -1).all()
    weight = expected / expected.sum() * math.log(BOX_AREA)
    np.testing.assert_allclose(out["box_weight"][0].numpy(), weight, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_smaller_box_wins_where_box_areas_overlap(order):
    # Large box: grid 14 x 14, radius int(7 * 0.54) = 3 around (8, 8) -> cells 5..11. Small box: grid 4 x 4,
    # radius int(2 * 0.54) = 1 around (11, 11) -> cells 10..12. They share the cells 10..11 x 10..11.
    large, small = [4.0, 4.0, 60.0, 60.0], [36.0, 36.0, 52.0, 52.0]
    boxes = [large, small] if order == (0, 1) else [small, large]
    out = _render(boxes)
    large_g, small_g = _window((8, 8), 3, 3), _window((11, 11), 1, 1)
    small_cells = small_g > 0
    large_only = (large_g > 0) & ~small_cells
    assert int(small_cells.sum()) == 9 and int(large_only.sum()) == 49 - 4
    target = out["box_target"].numpy()
    assert (target[:, small_cells] == np.array(small)[:, None]).all()
    assert (target[:, large_only] == np.array(large)[:, None]).all()
    assert int((target[0] >= 0).sum()) == 9 + 45
    # Each box keeps the normalisation over all of its own cells, also the ones it lost.
    expected = np.where(small_cells, small_g / small_g.sum() * math.log(17 * 17), 0.0)
    expected += np.where(large_only, large_g / large_g.sum() * math.log(57 * 57), 0.0)
    np.testing.assert_allclose(out["box_weight"][0].numpy(), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out["heatmap"][0].numpy(), np.maximum(large_g, small_g), atol=1e-7)


@pytest.mark.parametrize(
    ("mode", "share"),
    [("log_area", math.log(BOX_AREA)), ("area", BOX_AREA), ("sqrt_area", 35.0), ("uniform", 1.0)],
)
def test_box_weight_modes_by_hand(mode, share):
    weight = _render([BOX], box_weight=mode)["box_weight"][0]
    assert float(weight.sum()) == pytest.approx(share, rel=1e-5)
    gaussian = _window((8, 4), 3, 1)
    np.testing.assert_allclose(weight.numpy(), gaussian / gaussian.sum() * share, rtol=1e-5, atol=1e-7)
    assert set(BOX_WEIGHT_MODES) == {"log_area", "area", "sqrt_area", "uniform"}


def test_beta_sets_the_box_area_and_alpha_the_heatmap():
    # beta 0.3: radii int(6 * 0.3) = 1 (x) and int(3 * 0.3) = 0 (y): the 3 cells (7..9, 4).
    out = _render([BOX], beta=0.3)
    np.testing.assert_allclose(out["heatmap"][0].numpy(), _window((8, 4), 3, 1), atol=1e-7)
    covered = out["box_weight"][0] > 0
    assert covered.nonzero().tolist() == [[4, 7], [4, 8], [4, 9]]
    assert int((out["box_target"][0] >= 0).sum()) == 3
    expected = np.array([math.exp(-2), 1.0, math.exp(-2)])  # sigma_x = 3 / 6: dx = 1 gives exp(-1 / (2 * 0.25))
    np.testing.assert_allclose(
        out["box_weight"][0, 4, 7:10].numpy(), expected / expected.sum() * math.log(BOX_AREA), rtol=1e-5
    )


def test_boxes_are_clipped_to_the_image_and_dropped_when_outside():
    # 64 x 64 input: the first box is cut to [40, 8, 63, 40]; the second lies right of the image.
    out = _render([[40.0, 8.0, 90.0, 40.0], [70.0, 0.0, 90.0, 20.0]])
    assert out["box_target"][:, out["box_weight"][0] > 0].unique(dim=1).T.tolist() == [[40.0, 8.0, 63.0, 40.0]]
    # On the grid [10, 2, 15.75 -> 15, 10]: w 5, h 8, radii int(2.5 * 0.54) = 1 (x) and int(4 * 0.54) = 2 (y),
    # centre (int(51.5 / 4), int(24 / 4)) = (12, 6).
    np.testing.assert_allclose(out["heatmap"][0].numpy(), _window((12, 6), 1, 2), atol=1e-7)
    area = (63 - 40 + 1) * (40 - 8 + 1)
    assert float(out["box_weight"].sum()) == pytest.approx(math.log(area), rel=1e-5)


def test_ignore_box_draws_nothing_and_masks_its_cells():
    out = _render([BOX, [0.0, 40.0, 16.0, 60.0]], ignore=[False, True])
    np.testing.assert_allclose(out["heatmap"][0].numpy(), _window((8, 4), 3, 1), atol=1e-7)
    # Ignore box on the grid: [0, 10, 4, 15] -> cells x 0..4, y 10..15 masked.
    mask = np.ones(GRID, dtype=np.float32)
    mask[10:16, 0:5] = 0
    np.testing.assert_array_equal(out["heatmap_mask"][0].numpy(), mask)
    assert float(out["box_weight"].sum()) == pytest.approx(math.log(BOX_AREA), rel=1e-5)


def test_padding_and_empty_batches():
    boxes = torch.tensor([[BOX, BOX]])
    out = render_ttf_targets(
        boxes, torch.tensor([[0, -1]]), torch.tensor([[True, False]]),
        num_classes=1, output_size=GRID, down_ratio=DOWN,
    )
    np.testing.assert_allclose(out["heatmap"][0, 0].numpy(), _window((8, 4), 3, 1), atol=1e-7)
    empty = render_ttf_targets(
        torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, 0, dtype=torch.bool),
        num_classes=3, output_size=(8, 4), down_ratio=DOWN,
    )
    assert empty["heatmap"].shape == (2, 3, 8, 4) and (empty["heatmap"] == 0).all()
    assert empty["box_target"].shape == (2, 4, 8, 4) and (empty["box_target"] == -1).all()
    assert empty["box_weight"].shape == (2, 1, 8, 4) and (empty["box_weight"] == 0).all()


def test_input_errors_name_the_problem():
    boxes, valid = torch.tensor([[BOX]]), torch.tensor([[True]])
    common = {"num_classes": 1, "output_size": GRID, "down_ratio": DOWN}
    with pytest.raises(ValueError, match=r"render_ttf_targets: labels\[0, 0\] = 1 is outside \[0, 1\)"):
        render_ttf_targets(boxes, torch.tensor([[1]]), valid, **common)
    with pytest.raises(ValueError, match=r"render_ttf_targets: boxes must be \[B, M, 4\]"):
        render_ttf_targets(boxes[0], torch.tensor([[0]]), valid, **common)
    with pytest.raises(ValueError, match=r"target.box_weight: 'log' is not one of"):
        render_ttf_targets(boxes, torch.tensor([[0]]), valid, box_weight="log", **common)
    with pytest.raises(ValueError, match=r"target.alpha must lie in \(0, 1\], got 0.0"):
        render_ttf_targets(boxes, torch.tensor([[0]]), valid, alpha=0.0, **common)
    with pytest.raises(ValueError, match=r"target.beta must lie in \(0, 1\], got 1.5"):
        render_ttf_targets(boxes, torch.tensor([[0]]), valid, beta=1.5, **common)
    with pytest.raises(ValueError, match=r"render_ttf_targets: down_ratio must be positive, got 0"):
        render_ttf_targets(boxes, torch.tensor([[0]]), valid, **{**common, "down_ratio": 0})
