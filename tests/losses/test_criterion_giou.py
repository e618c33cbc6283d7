"""The criterion with TTFNet's GIoU box terms (``loss.box.type: giou``) on hand-made cases."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from centernet.config import load_config
from centernet.losses import CenterNetCriterion, build_heatmap_loss
from centernet.losses.box_terms import CentreL1Terms, LtrbGIoUTerms
from centernet.losses.build import build_criterion
from centernet.losses.giou import cell_centres
from centernet.targets import render_ttf_targets

EPS = 1e-4  # TTFNet's avg_factor epsilon
DOWN = 4
WEIGHT = 5.0


def _criterion(**kwargs: object) -> CenterNetCriterion:
    return CenterNetCriterion(
        build_heatmap_loss("penalty_reduced_focal"), box_terms=LtrbGIoUTerms(weight=WEIGHT, down_ratio=DOWN), **kwargs
    )


def _hand_targets() -> dict[str, torch.Tensor]:
    """A 1-class 1x2 grid: cell (0, 0) regresses [-2, -2, 2, 2] with weight 2, cell (1, 0) [2, -2, 6, 2] with 1."""
    heatmap = torch.tensor([[[[1.0, 0.0]]]])
    box_target = torch.tensor([[-2.0, 2.0], [-2.0, -2.0], [2.0, 6.0], [2.0, 2.0]]).view(1, 4, 1, 2)
    return {"heatmap": heatmap, "box_target": box_target, "box_weight": torch.tensor([[[[2.0, 1.0]]]])}


def _hand_outputs(logit: float = 0.0) -> dict[str, torch.Tensor]:
    # cell (0, 0) at (0, 0) predicts [-1, -1, 1, 1]: in inclusive pixels (TTFNet's GIoU) a 3 x 3 box inside
    # the 5 x 5 target, IoU 9 / 25, enclosed by the target: GIoU 0.36;
    # cell (1, 0) at (4, 0) predicts [2, -2, 6, 2], its target exactly.
    ltrb = torch.tensor([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, 2.0]]).view(1, 4, 1, 2)
    return {"heatmap": torch.full((1, 1, 1, 2), logit), "ltrb": ltrb}


def test_hand_made_giou_case() -> None:
    terms = _criterion()(_hand_outputs(), _hand_targets())
    assert list(terms) == ["heatmap", "box"]
    assert terms["box"].item() == pytest.approx(WEIGHT * 2.0 * (1 - 9 / 25) / (3.0 + EPS), rel=1e-6)
    # p = 0.5: one positive log(2) * 0.25, one zero-target negative log(2) * 0.25, over 1 positive
    assert terms["heatmap"].item() == pytest.approx(0.5 * math.log(2.0), rel=1e-6)


def test_perfect_ltrb_gives_a_zero_box_term() -> None:
    boxes = torch.tensor([[[4.0, 6.0, 30.0, 40.0], [36.0, 8.0, 60.0, 20.0]]])
    targets = render_ttf_targets(
        boxes, torch.tensor([[0, 1]]), torch.tensor([[True, True]]), ignore=None, num_classes=2,
        output_size=(16, 16), down_ratio=DOWN, alpha=0.54, beta=0.54, box_weight="log_area",
    )
    xs, ys = cell_centres(16, 16, DOWN, torch.device("cpu"))
    x1, y1, x2, y2 = targets["box_target"].unbind(1)
    ltrb = torch.stack((xs - x1, ys - y1, x2 - xs, y2 - ys), dim=1)  # exact distances to the target sides
    ltrb = torch.where(targets["box_weight"] > 0, ltrb, torch.ones_like(ltrb))
    assert targets["box_weight"].sum() > 0
    terms = _criterion()({"heatmap": torch.zeros(1, 2, 16, 16), "ltrb": ltrb}, targets)
    assert terms["box"].item() == pytest.approx(0.0, abs=1e-6)
    wrong = _criterion()({"heatmap": torch.zeros(1, 2, 16, 16), "ltrb": ltrb * 0.5}, targets)
    assert wrong["box"].item() > 0.1


def test_stacks_are_averaged_and_gradients_reach_ltrb() -> None:
    first = _criterion()(_hand_outputs(0.0), _hand_targets())
    second_outputs = _hand_outputs(1.0)
    second_outputs["ltrb"] = second_outputs["ltrb"].to(torch.bfloat16).requires_grad_(True)
    second = _criterion()(second_outputs, _hand_targets())
    both = _criterion()([_hand_outputs(0.0), second_outputs], _hand_targets())
    for key in ("heatmap", "box"):
        assert both[key].dtype == torch.float32
        assert both[key].item() == pytest.approx((first[key].item() + second[key].item()) / 2, rel=1e-6)
    second["box"].backward()
    assert second_outputs["ltrb"].grad is not None and second_outputs["ltrb"].grad[0, :, 0, 0].abs().sum() > 0


def test_missing_keys_are_named() -> None:
    targets = _hand_targets()
    del targets["box_weight"]
    with pytest.raises(KeyError, match="box_weight"):
        _criterion()(_hand_outputs(), targets)
    with pytest.raises(KeyError, match="ltrb"):
        _criterion()({"heatmap": torch.zeros(1, 1, 1, 2)}, _hand_targets())


def test_build_criterion_follows_loss_box_type(tiny_config: Callable[..., Path]) -> None:
    ttf = build_criterion(load_config(tiny_config(), ["model.head.box=ltrb", "target.box=gaussian_area",
                                                      "loss.box.type=giou", "loss.box.weight=3"]))
    assert isinstance(ttf.box_terms, LtrbGIoUTerms)
    assert ttf.weights == {"heatmap": 1.0, "box": 3.0} and ttf.box_terms.down_ratio == 4
    centernet = build_criterion(load_config(tiny_config()))
    assert isinstance(centernet.box_terms, CentreL1Terms)
    assert centernet.weights == {"heatmap": 1.0, "size": 0.1, "offset": 1.0}
