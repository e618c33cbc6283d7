"""The training target renderers: the configured one reproduces CenterNet's exactly by default."""

from __future__ import annotations

import dataclasses

import torch

from centernet.config.schema import TargetConfig
from centernet.engine.targets import ConfiguredTargets
from centernet.targets import render_targets, render_ttf_targets

CPU = torch.device("cpu")
INPUT_SIZE = (64, 96)
DOWN_RATIO = 4
NUM_CLASSES = 3


def _batch() -> dict[str, torch.Tensor]:
    """Two images with fractional, overlapping, clipped and padding boxes and one ignore region."""
    boxes = torch.tensor([
        [[3.3, 5.7, 40.2, 30.9], [20.5, 10.25, 36.75, 44.0], [80.0, 50.0, 120.0, 70.0], [0.0, 0.0, 0.0, 0.0]],
        [[10.0, 12.0, 14.5, 15.5], [1.0, 2.0, 95.0, 63.0], [50.0, 20.0, 70.0, 40.0], [5.0, 5.0, 9.0, 9.0]],
    ])
    return {
        "boxes": boxes,
        "labels": torch.tensor([[0, 2, 1, 0], [1, 1, 0, 2]]),
        "valid": torch.tensor([[True, True, True, False], [True, True, True, True]]),
        "ignore": torch.tensor([[False, False, False, False], [False, False, True, False]]),
    }


def test_default_target_section_is_bit_identical_to_render_targets() -> None:
    target = TargetConfig()
    ours = ConfiguredTargets(target, num_classes=NUM_CLASSES, down_ratio=DOWN_RATIO)(_batch(), INPUT_SIZE, CPU)
    batch = _batch()
    reference = render_targets(
        batch["boxes"] / DOWN_RATIO, batch["labels"], batch["valid"], ignore=batch["ignore"], num_classes=NUM_CLASSES,
        output_size=(16, 24), radius_formula=target.radius, min_overlap=target.min_overlap,
    )
    assert ours.keys() == reference.keys()
    for key, value in reference.items():
        assert ours[key].dtype == value.dtype and torch.equal(ours[key], value), key
    assert reference["mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 1]]  # padding and ignore regress nothing


def test_ttfnet_target_section_renders_dense_box_targets() -> None:
    target = dataclasses.replace(TargetConfig(), heatmap="elliptical", box="gaussian_area")
    ours = ConfiguredTargets(target, num_classes=NUM_CLASSES, down_ratio=DOWN_RATIO)(_batch(), INPUT_SIZE, CPU)
    batch = _batch()
    reference = render_ttf_targets(
        batch["boxes"], batch["labels"], batch["valid"], ignore=batch["ignore"], num_classes=NUM_CLASSES,
        output_size=(16, 24), down_ratio=DOWN_RATIO, alpha=target.alpha, beta=target.beta, box_weight="log_area",
    )
    assert set(ours) == {"heatmap", "heatmap_mask", "box_target", "box_weight"}
    for key in ours:
        assert torch.equal(ours[key], reference[key]), key
    assert tuple(ours["box_target"].shape) == (2, 4, 16, 24)
    # the first image's smallest box (box 1: 16.25 x 33.75 px) regresses its own corners at its centre cell
    assert ours["box_target"][0, :, 27 // DOWN_RATIO, 28 // DOWN_RATIO].tolist() == [20.5, 10.25, 36.75, 44.0]
