"""Tests for centernet.losses.criterion.CenterNetCriterion on a hand-made case."""

from __future__ import annotations

import math

import pytest
import torch

from centernet.losses import CenterNetCriterion, build_heatmap_loss

EPS = 1e-4  # RegL1Loss normaliser epsilon


def _targets() -> dict[str, torch.Tensor]:
    """One object at (x=1, y=0) on a 1-class 2x2 grid, plus one padding slot."""
    heatmap = torch.zeros(1, 1, 2, 2)
    heatmap[0, 0, 0, 1] = 1.0
    return {
        "heatmap": heatmap,
        "size": torch.tensor([[[4.0, 2.0], [0.0, 0.0]]]),
        "offset": torch.tensor([[[0.25, 0.75], [0.0, 0.0]]]),
        "index": torch.tensor([[1, 0]]),
        "mask": torch.tensor([[1.0, 0.0]]),
        "heatmap_mask": torch.ones(1, 1, 2, 2),
    }


def _outputs(logit: float, size: float, offset: float, dtype: torch.dtype = torch.float32) -> dict:
    return {
        "heatmap": torch.full((1, 1, 2, 2), logit, dtype=dtype),
        "size": torch.full((1, 2, 2, 2), size, dtype=dtype),
        "offset": torch.full((1, 2, 2, 2), offset, dtype=dtype),
    }


def _criterion() -> CenterNetCriterion:
    return CenterNetCriterion(build_heatmap_loss("penalty_reduced_focal"), size_weight=0.1, offset_weight=1.0)


def test_hand_made_case() -> None:
    terms = _criterion()(_outputs(0.0, 3.0, 0.5), _targets())
    assert set(terms) == {"heatmap", "size", "offset"}
    # p = 0.5 everywhere: 1 positive and 3 zero-target negatives, each log(0.5) * 0.25
    assert terms["heatmap"].item() == pytest.approx(math.log(2.0), rel=1e-6)
    assert terms["size"].item() == pytest.approx(0.1 * (1.0 + 1.0) / (2 + EPS), rel=1e-6)
    assert terms["offset"].item() == pytest.approx(1.0 * (0.25 + 0.25) / (2 + EPS), rel=1e-6)


def test_heatmap_mask_is_applied() -> None:
    targets = _targets()
    targets["heatmap_mask"] = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])  # bottom row ignored
    terms = _criterion()(_outputs(0.0, 3.0, 0.5), targets)
    assert terms["heatmap"].item() == pytest.approx(0.5 * math.log(2.0), rel=1e-6)
    del targets["heatmap_mask"]  # optional: everything counts
    assert _criterion()(_outputs(0.0, 3.0, 0.5), targets)["heatmap"].item() == pytest.approx(math.log(2.0))


def test_stacks_are_averaged_and_terms_fp32() -> None:
    criterion = CenterNetCriterion(build_heatmap_loss("bce"), heatmap_weight=2.0, size_weight=0.5)
    first = criterion(_outputs(0.0, 3.0, 0.5), _targets())
    second = criterion(_outputs(1.0, 5.0, 0.0, torch.bfloat16), _targets())
    both = criterion([_outputs(0.0, 3.0, 0.5), _outputs(1.0, 5.0, 0.0, torch.bfloat16)], _targets())
    for key in ("heatmap", "size", "offset"):
        assert second[key].dtype == torch.float32 and both[key].dtype == torch.float32
        assert both[key].item() == pytest.approx((first[key].item() + second[key].item()) / 2, rel=1e-6)
    assert first["heatmap"].item() == pytest.approx(2.0 * math.log(2.0), rel=1e-6)
    assert second["size"].item() == pytest.approx(0.5 * (1.0 + 3.0) / (2 + EPS), rel=1e-6)


def test_gradients_flow_to_all_heads() -> None:
    outputs = {key: value.requires_grad_(True) for key, value in _outputs(0.3, 3.0, 0.5).items()}
    sum(_criterion()(outputs, _targets()).values()).backward()
    assert all(value.grad is not None and value.grad.abs().sum() > 0 for value in outputs.values())


def test_no_objects_is_finite() -> None:
    targets = _targets()
    targets["heatmap"].zero_()
    targets["mask"].zero_()
    terms = _criterion()(_outputs(0.0, 3.0, 0.5), targets)
    assert terms["size"].item() == 0.0 and terms["offset"].item() == 0.0
    assert terms["heatmap"].item() == pytest.approx(-4 * math.log(0.5) * 0.25, rel=1e-6)


def test_errors_name_the_problem() -> None:
    targets = _targets()
    del targets["index"]
    with pytest.raises(KeyError, match="index"):
        _criterion()(_outputs(0.0, 3.0, 0.5), targets)
    outputs = _outputs(0.0, 3.0, 0.5)
    del outputs["offset"]
    with pytest.raises(KeyError, match="offset"):
        _criterion()(outputs, _targets())
    with pytest.raises(ValueError, match="empty"):
        _criterion()([], _targets())
    bad = _outputs(0.0, 3.0, 0.5)
    bad["heatmap"] = torch.zeros(1, 2, 2, 2)
    with pytest.raises(ValueError, match="heatmap"):
        _criterion()(bad, _targets())
