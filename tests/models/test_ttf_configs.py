"""The TTFNet configs: their ltrb models build at their own input size, the target ablation changes only
the target/box keys, and the COCO recipe holds TTFNet's published ResNet-18 settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from centernet.config import config_to_dict, load_config
from centernet.models import build_centernet
from tests.conftest import EXPERIMENT_CONFIGS, REPO

CONFIGS = EXPERIMENT_CONFIGS
LTRB_CONFIGS = [p for p in CONFIGS if load_config(p).model.head.box == "ltrb"]
NUM_CLASSES = 5
ABLATION = REPO / "configs" / "ablations"
BOX_KEY_PREFIXES = ("target.", "model.head.box", "model.head.ltrb_scale", "loss.box.")


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        flat.update(_flatten(value, f"{path}.") if isinstance(value, dict) else {path: value})
    return flat


def test_the_ttfnet_configs_are_found() -> None:
    names = {p.name for p in LTRB_CONFIGS}
    assert names == {
        "ttfnet_resnet18_coco_512.yaml", "shapes_ttfnet_resnet18.yaml", "trees_ttfnet_efficientnet_lite0.yaml",
        "shapes_ttfnet_targets.yaml", "trees_ttfnet_targets.yaml",
    }


@pytest.mark.parametrize("path", LTRB_CONFIGS, ids=[p.name for p in LTRB_CONFIGS])
def test_ltrb_config_builds_its_model(path: Path) -> None:
    cfg = load_config(path)
    model_cfg = cfg.model
    with torch.device("meta"):
        model = build_centernet(
            backbone=model_cfg.backbone.type, backbone_weights=None, neck=model_cfg.neck.type,
            neck_channels=model_cfg.neck.channels, num_classes=NUM_CLASSES, head_conv=model_cfg.head.head_conv,
            prior_prob=model_cfg.head.prior_prob, box=model_cfg.head.box, ltrb_scale=model_cfg.head.ltrb_scale,
        ).eval()
        height, width = cfg.data.input_size
        out = model(torch.zeros(1, 3, height, width))
    grid = (height // cfg.data.down_ratio, width // cfg.data.down_ratio)
    assert model.output_stride == cfg.data.down_ratio
    assert {k: tuple(v.shape) for k, v in out.items()} == {"heatmap": (1, NUM_CLASSES, *grid), "ltrb": (1, 4, *grid)}


@pytest.mark.parametrize("name", ["shapes_elliptical_heatmap.yaml", "shapes_ttfnet_targets.yaml"])
def test_target_ablation_changes_only_target_and_box_keys(name: str) -> None:
    reference = _flatten(config_to_dict(load_config(ABLATION / "shapes_penalty_reduced_focal.yaml")))
    variant = _flatten(config_to_dict(load_config(ABLATION / "targets" / name)))
    changed = {key for key in reference.keys() | variant.keys() if reference.get(key) != variant.get(key)}
    assert changed and all(key.startswith(BOX_KEY_PREFIXES) for key in changed), changed
    assert variant["target.heatmap"] == "elliptical"


def test_ttfnet_resnet18_holds_the_published_recipe() -> None:
    cfg = load_config(REPO / "configs" / "ttfnet_resnet18_coco_512.yaml")
    solver = cfg.solver
    assert (solver.optimizer, solver.lr, solver.reference_batch_size, cfg.data.batch_size) == ("sgd", 0.016, 128, 16)
    assert (solver.momentum, solver.weight_decay, solver.grad_clip) == (0.9, 0.0004, 35.0)
    assert (solver.warmup_iters, solver.warmup_factor, solver.epochs, solver.lr_steps) == (500, 0.2, 24, [18, 22])
    assert (cfg.loss.heatmap.type, cfg.loss.heatmap.weight, cfg.loss.box.type, cfg.loss.box.weight) == (
        "penalty_reduced_focal", 1.0, "giou", 5.0,
    )
    assert (cfg.target.heatmap, cfg.target.alpha, cfg.target.box, cfg.target.beta) == (
        "elliptical", 0.54, "gaussian_area", 0.54,
    )
    assert (cfg.model.head.head_conv, cfg.model.head.box, cfg.model.head.ltrb_scale) == (128, "ltrb", 16.0)
    assert cfg.model.neck.channels == [256, 128, 64] and cfg.data.input_size == [512, 512]
