"""Tests for the DLA-34 backbone (centernet/models/backbones/dla.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from centernet.models import BACKBONES
from centernet.models.backbones.dla import DLA34_CHANNELS, DLA34_IMAGENET_URL, DLABackbone, dla34
from tests.conftest import CHECKPOINT_KEYS_PATH

ORIGINAL_PREFIX = "base."


@pytest.fixture(scope="module")
def backbone() -> DLABackbone:
    torch.manual_seed(0)
    return dla34()


def test_feature_maps_have_the_documented_strides_and_channels(backbone: DLABackbone) -> None:
    maps = backbone(torch.randn(2, 3, 32, 64))
    assert [tuple(m.shape) for m in maps] == [
        (2, 16, 32, 64),
        (2, 32, 16, 32),
        (2, 64, 8, 16),
        (2, 128, 4, 8),
        (2, 256, 2, 4),
        (2, 512, 1, 2),
    ]
    assert backbone.feature_channels == DLA34_CHANNELS
    assert backbone.feature_strides == (1, 2, 4, 8, 16, 32)
    assert (backbone.out_channels, backbone.stride) == (512, 32)
    assert BACKBONES["dla34"] is dla34


def test_state_dict_is_the_original_base(backbone: DLABackbone) -> None:
    original = json.loads(CHECKPOINT_KEYS_PATH.read_text())["dla_34"]
    expected = {k[len(ORIGINAL_PREFIX) :]: tuple(v) for k, v in original.items() if k.startswith(ORIGINAL_PREFIX)}
    assert {k: tuple(v.shape) for k, v in backbone.state_dict().items()} == expected


def test_only_the_discarded_projections_are_frozen_and_everything_else_learns(backbone: DLABackbone) -> None:
    frozen = {name for name, p in backbone.named_parameters() if not p.requires_grad}
    assert frozen == {f"level{i}.project.{p}" for i in (3, 4) for p in ("0.weight", "1.weight", "1.bias")}
    backbone.zero_grad(set_to_none=True)
    sum(m.mean() for m in backbone(torch.randn(2, 3, 32, 32))).backward()
    no_grad = [name for name, p in backbone.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []  # no unused trainable parameter (DDP-safe)


def test_level_root_feeds_the_tree_input_to_the_last_root(backbone: DLABackbone) -> None:
    # level3 (depth 2, 64 -> 128): the last root sees its two blocks (128 + 128), the first subtree (128)
    # and the max-pooled input (64): 448 channels, as the original's root_dim arithmetic gives.
    assert backbone.level3.tree2.root.conv.in_channels == 128 + 128 + 128 + 64
    assert backbone.level5.root.conv.in_channels == 512 + 512 + 256


def test_local_weights_round_trip_ignoring_the_classifier(backbone: DLABackbone, tmp_path: Path) -> None:
    state = {f"module.{k}": v.clone() for k, v in backbone.state_dict().items()}
    state["module.fc.weight"] = torch.zeros(1000, 512, 1, 1)  # the ImageNet file's classifier
    torch.save({"state_dict": state}, tmp_path / "dla34.pth")
    torch.manual_seed(1)
    loaded = dla34(weights=str(tmp_path / "dla34.pth"))
    for key, value in backbone.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key

    del state["module.level2.root.bn.running_var"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match=re.escape("1 missing keys (level2.root.bn.running_var)")):
        dla34(weights=str(tmp_path / "broken.pth"))
    with pytest.raises(FileNotFoundError, match=re.escape("absent.pth does not exist")):
        dla34(weights=str(tmp_path / "absent.pth"))


def test_offline_imagenet_download_explains_the_local_file(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, **kwargs: object) -> None:
        raise OSError(f"cannot reach {url}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match=r"model\.backbone\.weights=/path/to/dla34-ba72cf86\.pth") as info:
        dla34(weights="imagenet")
    assert DLA34_IMAGENET_URL in str(info.value)


def test_same_maps_as_timm_dla34_with_the_same_weights() -> None:
    """timm's independent DLA-34 (same key names; it drops the two unused projections) gives the same maps."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    ours = dla34()
    for module in ours.modules():  # non-trivial BatchNorm statistics and affine parameters
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.normal_(module.bias, std=0.1)
    reference = timm.create_model("dla34", pretrained=False)
    missing, unexpected = reference.load_state_dict(ours.state_dict(), strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"]
    assert {k.split(".")[0] + "." + k.split(".")[1] for k in unexpected} == {"level3.project", "level4.project"}
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        maps = ours.eval()(images)
        x = reference.eval().base_layer(images)
        for index, ours_map in enumerate(maps):
            x = getattr(reference, f"level{index}")(x)
            assert torch.allclose(ours_map, x, atol=1e-5), index
