"""Tests for centernet.models.original_checkpoint (loading the original CenterNet's .pth files)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import torch

from centernet.models import build_centernet
from centernet.models.detector import CenterNet
from centernet.models.original_checkpoint import LoadReport, load_original_centernet_checkpoint, map_original_key
from tests.conftest import CHECKPOINT_KEYS_PATH
from tests.models.test_backbone_hourglass import small_hourglass_detector

OPTIONAL = ".num_batches_tracked"
# architecture of the key file -> (our backbone, neck, neck channels, head_conv)
ARCHITECTURES = {
    "res_18": ("resnet18", "deconv", (256, 256, 256), 64),
    "res_101": ("resnet101", "deconv", (256, 256, 256), 64),
    "resdcn_18": ("resnet18", "dcn_deconv", (256, 128, 64), 64),
    "resdcn_101": ("resnet101", "dcn_deconv", (256, 128, 64), 64),
    "dla_34": ("dla34", "ida_up", (64, 128, 256, 512), 256),
    "hourglass": ("hourglass104", "identity", (), 256),
}
HEATMAP_FINAL = ("head.heatmap.2.bias", "head.heatmap.2.weight")
STACKED_HEATMAP_FINAL = tuple(f"head.{s}.heatmap.2.{p}" for s in (0, 1) for p in ("bias", "weight"))


def _original_shapes(architecture: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the original model (without the num_batches_tracked buffers it did not save)."""
    keys = json.loads(CHECKPOINT_KEYS_PATH.read_text())[architecture]
    return {k: tuple(shape) for k, shape in keys.items() if not k.endswith(OPTIONAL)}


def _build(architecture: str, num_classes: int = 80) -> CenterNet:
    backbone, neck, channels, head_conv = ARCHITECTURES[architecture]
    return build_centernet(
        backbone=backbone,
        backbone_weights=None,
        neck=neck,
        neck_channels=channels,
        num_classes=num_classes,
        head_conv=head_conv,
        prior_prob=0.1,
    )


def _write(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """Save ``state`` as the original does: DataParallel prefix, wrapped with the epoch."""
    torch.save({"epoch": 140, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    return path


def _fake_state(architecture: str, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=generator) for k, shape in _original_shapes(architecture).items()}


def test_map_original_key_hand_computed() -> None:
    assert map_original_key("conv1.weight") == "backbone.conv1.weight"
    assert map_original_key("bn1.running_var") == "backbone.bn1.running_var"
    assert map_original_key("layer3.22.conv2.weight") == "backbone.layer3.22.conv2.weight"
    assert map_original_key("deconv_layers.12.conv_offset_mask.bias") == "neck.layers.12.conv_offset_mask.bias"
    assert map_original_key("hm.2.bias") == "head.heatmap.2.bias"
    assert map_original_key("wh.0.weight") == "head.size.0.weight"
    assert map_original_key("reg.2.weight") == "head.offset.2.weight"
    assert map_original_key("hm.weight") == "head.heatmap.0.weight"  # head_conv 0: a single conv
    assert map_original_key("base.level3.tree2.root.conv.weight") == "backbone.level3.tree2.root.conv.weight"
    assert map_original_key("dla_up.ida_1.up_2.weight") == "neck.dla_up.ida_1.up_2.weight"
    assert (
        map_original_key("ida_up.node_2.conv.conv_offset_mask.bias") == "neck.ida_up.node_2.conv.conv_offset_mask.bias"
    )
    assert map_original_key("kps.1.low2.low1.0.skip.1.bias") == "backbone.kps.1.low2.low1.0.skip.1.bias"
    assert map_original_key("cnvs_.0.1.weight") == "backbone.cnvs_.0.1.weight"
    assert map_original_key("inters.0.conv1.weight") == "backbone.inters.0.conv1.weight"
    assert map_original_key("hm.1.0.conv.bias") == "head.1.heatmap.0.bias"  # hourglass: one head per stack
    assert map_original_key("reg.0.1.weight") == "head.0.offset.2.weight"
    assert map_original_key("hm_hp.0.weight") is None
    assert map_original_key("tl_heats.0.0.conv.weight") is None


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_every_tensor_arrives_in_its_place(architecture: str, tmp_path: Path) -> None:
    state = _fake_state(architecture)
    model = _build(architecture)  # Hourglass-104 at full size (191M parameters): only here
    report = load_original_centernet_checkpoint(model, _write(tmp_path / "model.pth", state))
    ours = model.state_dict()
    for key, value in state.items():
        assert torch.equal(ours[map_original_key(key)], value), key
    assert set(report.loaded) == {map_original_key(k) for k in state}
    assert len(report.loaded) == len(state)  # no key of the file unused
    assert report.skipped == ()
    assert report.missing and all(k.endswith(OPTIONAL) for k in report.missing)
    assert set(report.loaded) | set(report.missing) == set(ours)
    assert report.source == str(tmp_path / "model.pth")


def test_other_class_count_skips_the_heatmap_layer(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = _fake_state("resdcn_18")
    torch.manual_seed(1)
    model = _build("resdcn_18", num_classes=20)
    initial = {k: model.state_dict()[k].clone() for k in HEATMAP_FINAL}
    with caplog.at_level(logging.WARNING, logger="centernet.models.original_checkpoint"):
        report = load_original_centernet_checkpoint(model, _write(tmp_path / "coco.pth", state))
    assert report.skipped == HEATMAP_FINAL
    assert set(report.loaded) == {map_original_key(k) for k in state} - set(HEATMAP_FINAL)
    ours = model.state_dict()
    for key in HEATMAP_FINAL:
        assert torch.equal(ours[key], initial[key])  # kept the model's initialisation
    assert torch.equal(ours["head.heatmap.0.weight"], state["hm.0.weight"])  # hidden conv loaded
    assert torch.equal(ours["head.size.2.weight"], state["wh.2.weight"])
    assert "80 heatmap classes, the model 20" in caplog.text
    assert "head.heatmap.2.weight" in caplog.text

    with pytest.raises(
        ValueError, match=r"'head.heatmap.2.weight' has shape \(80, 64, 1, 1\), the model \(20, 64, 1, 1\)"
    ):
        load_original_centernet_checkpoint(model, tmp_path / "coco.pth", strict_heads=True)


def test_corrupted_shape_names_the_key(tmp_path: Path) -> None:
    state = _fake_state("res_18")
    state["layer2.0.conv1.weight"] = torch.zeros(128, 64, 3, 2)
    path = _write(tmp_path / "bad.pth", state)
    with pytest.raises(ValueError, match=r"backbone\.layer2\.0\.conv1\.weight \(128, 64, 3, 2\) vs \(128, 64, 3, 3\)"):
        load_original_centernet_checkpoint(_build("res_18"), path)


def test_missing_and_unknown_keys_are_named(tmp_path: Path) -> None:
    state = _fake_state("res_18")
    del state["deconv_layers.4.running_mean"]
    with pytest.raises(ValueError, match=re.escape("1 model keys are not in the file (neck.layers.4.running_mean)")):
        load_original_centernet_checkpoint(_build("res_18"), _write(tmp_path / "missing.pth", state))

    state = _fake_state("res_18")
    state["hm_hp.0.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=re.escape("1 keys map to no part of the model (hm_hp.0.weight)")):
        load_original_centernet_checkpoint(_build("res_18"), _write(tmp_path / "pose.pth", state))


def test_wrong_architecture_gets_a_hint(tmp_path: Path) -> None:
    path = _write(tmp_path / "resdcn.pth", _fake_state("resdcn_18"))
    with pytest.raises(ValueError, match=r"keys of the file are not in the model.*set model\.neck\.type=dcn_deconv"):
        load_original_centernet_checkpoint(_build("res_18"), path)
    path = _write(tmp_path / "res.pth", _fake_state("res_18"))
    with pytest.raises(ValueError, match=re.escape("set model.neck.type=deconv, channels [256, 256, 256]")):
        load_original_centernet_checkpoint(_build("resdcn_18"), path)


@pytest.mark.parametrize(
    ("architecture", "settings"),
    [
        ("dla_34", "set model.backbone.type=dla34 model.neck.type=ida_up model.neck.channels=[64,128,256,512] "),
        ("resdcn_101", "set model.backbone.type=resnet101)"),
    ],
)
def test_other_backbone_names_its_settings(architecture: str, settings: str, tmp_path: Path) -> None:
    path = _write(tmp_path / "other.pth", _fake_state(architecture))
    with pytest.raises(ValueError, match=f"the file holds a .* backbone \\({re.escape(settings)}"):
        load_original_centernet_checkpoint(_build("res_18"), path)


def test_hourglass_file_into_a_dla_model_is_named(tmp_path: Path) -> None:
    keys = json.loads(CHECKPOINT_KEYS_PATH.read_text())["hourglass"]
    state = {k: torch.zeros(1) for k in keys}  # rejected on the key names before any shape is compared
    with pytest.raises(ValueError, match=re.escape("set model.backbone.type=hourglass104 model.neck.type=identity")):
        load_original_centernet_checkpoint(_build("dla_34"), _write(tmp_path / "hg.pth", state))


def test_head_width_mismatch_gets_a_hint(tmp_path: Path) -> None:
    model = build_centernet(
        backbone="dla34",
        backbone_weights=None,
        neck="ida_up",
        neck_channels=(64, 128, 256, 512),
        num_classes=80,
        head_conv=64,
        prior_prob=0.1,
    )
    with pytest.raises(ValueError, match=re.escape("heads have 256 hidden channels (set model.head.head_conv=256)")):
        load_original_centernet_checkpoint(model, _write(tmp_path / "dla.pth", _fake_state("dla_34")))


def _to_original_stacked(key: str) -> str:
    """Our key of a stacked (hourglass) model -> the original's (the inverse of map_original_key)."""
    if key.startswith("backbone."):
        return key.removeprefix("backbone.")
    _, stack, branch, index, param = key.split(".")
    original = {"heatmap": "hm", "size": "wh", "offset": "reg"}[branch]
    return f"{original}.{stack}.0.conv.{param}" if index == "0" else f"{original}.{stack}.1.{param}"


def test_stacked_heads_skip_every_heatmap_layer(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A 3-class (small) hourglass from a 5-class original file: both stacks' final heatmap convs are skipped."""
    torch.manual_seed(4)
    source = small_hourglass_detector(num_classes=5)
    state = {_to_original_stacked(k): v for k, v in source.state_dict().items() if not k.endswith(OPTIONAL)}
    assert all(map_original_key(k) in source.state_dict() for k in state)  # the inverse round-trips
    model = small_hourglass_detector(num_classes=3)
    before = {k: model.state_dict()[k].clone() for k in STACKED_HEATMAP_FINAL}
    with caplog.at_level(logging.WARNING, logger="centernet.models.original_checkpoint"):
        report = load_original_centernet_checkpoint(model, _write(tmp_path / "other.pth", state))
    assert report.skipped == tuple(sorted(STACKED_HEATMAP_FINAL))
    ours = model.state_dict()
    for key in STACKED_HEATMAP_FINAL:
        assert torch.equal(ours[key], before[key])
    for key, value in source.state_dict().items():
        if key not in STACKED_HEATMAP_FINAL and not key.endswith(OPTIONAL):
            assert torch.equal(ours[key], value), key
    assert "5 heatmap classes, the model 3" in caplog.text


def test_empty_and_absent_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape("absent.pth does not exist")):
        load_original_centernet_checkpoint(_build("res_18"), tmp_path / "absent.pth")
    with pytest.raises(ValueError, match="expected a non-empty state_dict"):
        load_original_centernet_checkpoint(_build("res_18"), _write(tmp_path / "empty.pth", {}))


def test_round_trip_of_our_own_weights(tmp_path: Path) -> None:
    torch.manual_seed(2)
    source = _build("resdcn_18")
    inverse = {"backbone.": "", "neck.layers.": "deconv_layers.", "head.heatmap.": "hm.", "head.size.": "wh."}
    inverse["head.offset."] = "reg."
    state = {}
    for key, value in source.state_dict().items():
        prefix = next(p for p in inverse if key.startswith(p))
        state[inverse[prefix] + key[len(prefix) :]] = value
    torch.manual_seed(3)
    target = _build("resdcn_18")
    report = load_original_centernet_checkpoint(target, _write(tmp_path / "ours.pth", state))
    assert isinstance(report, LoadReport)
    assert report.missing == ()  # our file has the num_batches_tracked buffers
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
