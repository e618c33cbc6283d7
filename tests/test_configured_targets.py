"""Tests for centernet.targets.render_training_targets: the target config section picks the renderers."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from centernet.config.schema import TargetConfig
from centernet.targets import render_targets, render_training_targets, render_ttf_targets

DOWN = 4
GRID = (16, 16)


@pytest.fixture(scope="module")
def batch() -> dict[str, torch.Tensor]:
    boxes = torch.tensor([[[4.0, 4.0, 60.0, 60.0], [36.0, 36.0, 52.0, 52.0]], [[2.0, 30.0, 30.0, 62.0], [0.0] * 4]])
    return {
        "boxes": boxes,
        "labels": torch.tensor([[0, 1], [1, -1]]),
        "valid": torch.tensor([[True, True], [True, False]]),
        "ignore": torch.tensor([[False, True], [False, False]]),
    }


def _render(batch: dict[str, torch.Tensor], **target: object) -> dict[str, torch.Tensor]:
    return render_training_targets(
        batch["boxes"], batch["labels"], batch["valid"], ignore=batch["ignore"],
        target=dataclasses.replace(TargetConfig(), **target), num_classes=2, output_size=GRID, down_ratio=DOWN,
    )


def _centernet(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return render_targets(
        batch["boxes"] / DOWN, batch["labels"], batch["valid"], ignore=batch["ignore"], num_classes=2, output_size=GRID
    )


def _ttfnet(batch: dict[str, torch.Tensor], **kwargs: object) -> dict[str, torch.Tensor]:
    return render_ttf_targets(
        batch["boxes"], batch["labels"], batch["valid"], ignore=batch["ignore"], num_classes=2, output_size=GRID,
        down_ratio=DOWN, **kwargs,
    )


def _assert_same(ours: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], keys: list[str]) -> None:
    for key in keys:
        assert torch.equal(ours[key], reference[key]), key


def test_default_is_exactly_render_targets_on_grid_boxes(batch):
    ours, reference = _render(batch), _centernet(batch)
    assert list(ours) == list(reference)
    _assert_same(ours, reference, list(reference))


def test_elliptical_heatmap_with_centre_boxes(batch):
    ours = _render(batch, heatmap="elliptical", alpha=0.4)
    assert sorted(ours) == ["heatmap", "heatmap_mask", "index", "mask", "offset", "size"]
    _assert_same(ours, _ttfnet(batch, alpha=0.4), ["heatmap", "heatmap_mask"])
    _assert_same(ours, _centernet(batch), ["size", "offset", "index", "mask"])
    assert not torch.equal(ours["heatmap"], _centernet(batch)["heatmap"])


def test_ttfnet_targets(batch):
    ours = _render(batch, heatmap="elliptical", box="gaussian_area", beta=0.3, box_weight="uniform")
    assert sorted(ours) == ["box_target", "box_weight", "heatmap", "heatmap_mask"]
    _assert_same(ours, _ttfnet(batch, beta=0.3, box_weight="uniform"), list(ours))


def test_circular_heatmap_with_gaussian_area_boxes(batch):
    ours = _render(batch, box="gaussian_area", radius="cornernet")
    reference = render_targets(
        batch["boxes"] / DOWN, batch["labels"], batch["valid"], ignore=batch["ignore"], num_classes=2,
        output_size=GRID, radius_formula="cornernet",
    )
    _assert_same(ours, reference, ["heatmap", "heatmap_mask"])
    _assert_same(ours, _ttfnet(batch), ["box_target", "box_weight"])
