"""Model builder: `model.init_checkpoint` loads an original-CenterNet-format checkpoint through the config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from centernet.config import load_config
from centernet.models.build import build_model

OUR_TO_ORIGINAL = {
    "backbone.": "",
    "neck.layers.": "deconv_layers.",
    "head.heatmap.": "hm.",
    "head.size.": "wh.",
    "head.offset.": "reg.",
}


def to_original_name(key: str) -> str:
    for ours, original in OUR_TO_ORIGINAL.items():
        if key.startswith(ours):
            return original + key[len(ours) :]
    raise AssertionError(key)


def test_init_checkpoint_from_the_config(tiny_config: Callable[..., Path], tmp_path: Path) -> None:
    overrides = ["model.neck.type=deconv"]
    torch.manual_seed(1)
    source = build_model(load_config(tiny_config(), overrides), num_classes=5)
    original = {
        "module." + to_original_name(k): v.clone()
        for k, v in source.state_dict().items()
        if not k.endswith("num_batches_tracked")  # older original files lack them
    }
    path = tmp_path / "ctdet_res18.pth"
    torch.save({"epoch": 70, "state_dict": original}, path)

    torch.manual_seed(2)  # a different random init, overwritten by the file
    model = build_model(load_config(tiny_config(), [*overrides, f"model.init_checkpoint={path}"]), num_classes=5)
    for key, value in model.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, source.state_dict()[key]), key


def test_frozen_bn_freezes_the_backbone_only(tiny_config: Callable[..., Path]) -> None:
    from torchvision.ops import FrozenBatchNorm2d

    model = build_model(load_config(tiny_config(), ["model.backbone.frozen_bn=true"]), num_classes=3)
    backbone_norms = [type(m) for m in model.backbone.modules() if "BatchNorm" in type(m).__name__]
    assert backbone_norms and set(backbone_norms) == {FrozenBatchNorm2d}
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.neck.modules())  # the neck still trains its BN
