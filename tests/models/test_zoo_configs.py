"""Every experiment config in configs/ loads and builds its model (so none rots).

Models are built on the ``meta`` device (shapes only, no weights downloaded or allocated) and run once at
the config's own input size, which checks the output stride against ``data.down_ratio`` and the input
size against the model's size divisor.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from centernet.config import load_config
from centernet.models.build import build_model
from tests.conftest import EXPERIMENT_CONFIGS, REPO

CONFIGS = EXPERIMENT_CONFIGS
NUM_CLASSES = 5
ZOO = {
    "centernet_resdcn18_coco_512.yaml": ("resnet18", "dcn_deconv", 512, 140),
    "centernet_dla34_coco_512.yaml": ("dla34", "ida_up", 512, 140),
    "centernet_hourglass104_coco_512.yaml": ("hourglass104", "identity", 512, 50),
    "centernet_resdcn18_voc_384.yaml": ("resnet18", "dcn_deconv", 384, 70),
    "centernet_resdcn18_voc_512.yaml": ("resnet18", "dcn_deconv", 512, 70),
    "centernet_dla34_voc_384.yaml": ("dla34", "ida_up", 384, 70),
    "centernet_dla34_voc_512.yaml": ("dla34", "ida_up", 512, 70),
}


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(REPO / "configs")) for p in CONFIGS])
def test_config_builds_its_model(path: Path) -> None:
    cfg = load_config(path)
    model_cfg = dataclasses.replace(
        cfg.model, backbone=dataclasses.replace(cfg.model.backbone, weights=None), init_checkpoint=None
    )
    with torch.device("meta"):
        model = build_model(dataclasses.replace(cfg, model=model_cfg), NUM_CLASSES).eval()
        height, width = cfg.data.input_size
        out = model(torch.zeros(1, 3, height, width))
    stride = cfg.data.down_ratio
    assert tuple(out["heatmap"].shape) == (1, NUM_CLASSES, height // stride, width // stride)
    assert ("ltrb" in out) == (cfg.model.head.box == "ltrb")
    assert ("size" in out) == (cfg.model.head.box == "size_offset")


def test_zoo_configs_exist_with_the_original_settings() -> None:
    names = {p.name for p in CONFIGS}
    assert set(ZOO) <= names
    for name, (backbone, neck, size, epochs) in ZOO.items():
        cfg = load_config(REPO / "configs" / name)
        assert (cfg.model.backbone.type, cfg.model.neck.type) == (backbone, neck), name
        assert cfg.data.input_size == [size, size] and cfg.solver.epochs == epochs, name
        assert cfg.eval.metric == ("voc07" if "_voc_" in name else "coco"), name
