"""Tests for centernet.models.backbones.resnet (architecture, parameter count, weight loading)."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from torchvision.models import ResNet18_Weights

from centernet.models.backbones import resnet18, resnet50, resnet101

IMAGENET_CLASSES = 1000


def _basic_block_params(cin: int, cout: int, stride: int) -> int:
    """Parameters of a torchvision BasicBlock: two 3x3 convs (no bias), two BNs, optional 1x1 shortcut."""
    params = cin * cout * 9 + 2 * cout + cout * cout * 9 + 2 * cout
    if stride != 1 or cin != cout:
        params += cin * cout + 2 * cout
    return params


def _resnet18_trunk_params() -> int:
    """ResNet-18 without fc, from the architecture table: 7x7 stem, 4 stages of 2 basic blocks."""
    total = 3 * 64 * 7 * 7 + 2 * 64  # conv1 + bn1
    cin = 64
    for cout, first_stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        total += _basic_block_params(cin, cout, first_stride) + _basic_block_params(cout, cout, 1)
        cin = cout
    return total


def _num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_resnet18_output_shape_and_attributes() -> None:
    torch.manual_seed(0)
    backbone = resnet18()
    assert backbone.out_channels == 512
    assert backbone.stride == 32
    assert backbone.feature_channels == (64, 128, 256, 512)
    maps = backbone(torch.randn(2, 3, 64, 96))
    assert [tuple(m.shape) for m in maps] == [(2, 64, 16, 24), (2, 128, 8, 12), (2, 256, 4, 6), (2, 512, 2, 3)]


def test_empty_batch() -> None:
    backbone = resnet18().eval()
    assert backbone(torch.zeros(0, 3, 64, 64))[-1].shape == (0, 512, 2, 2)


def test_resnet18_parameter_count_matches_hand_count_and_torchvision() -> None:
    backbone = resnet18()
    hand = _resnet18_trunk_params()
    assert hand == 11_176_512
    assert _num_params(backbone) == hand
    fc_params = 512 * IMAGENET_CLASSES + IMAGENET_CLASSES
    assert _num_params(torchvision.models.resnet18()) - fc_params == hand


def test_state_dict_keys_are_torchvision_keys_without_fc() -> None:
    reference = torchvision.models.resnet18().state_dict()
    expected = {k: v.shape for k, v in reference.items() if not k.startswith("fc.")}
    assert {k: v.shape for k, v in resnet18().state_dict().items()} == expected


def test_resnet50_and_resnet101() -> None:
    backbone = resnet50().eval()
    assert backbone.out_channels == 2048
    assert backbone.feature_channels == (256, 512, 1024, 2048)
    assert backbone(torch.zeros(1, 3, 32, 32))[-1].shape == (1, 2048, 1, 1)
    deep = resnet101()
    assert deep.out_channels == 2048
    assert deep.stride == 32
    assert len(deep.layer3) == 23  # ResNet-101: 3, 4, 23, 3 bottleneck blocks


def test_local_file_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = resnet18()
    with torch.no_grad():  # make running stats non-default so buffers are checked too
        source.bn1.running_mean.uniform_()
    path = tmp_path / "r18.pth"
    torch.save(source.state_dict(), path)
    loaded = resnet18(weights=path)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_local_file_torchvision_format_and_wrapped_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(2)
    reference = torchvision.models.resnet18().state_dict()  # includes fc.*, which is ignored
    path = tmp_path / "tv.pth"
    torch.save(reference, path)
    assert torch.equal(resnet18(weights=str(path)).layer4[1].conv2.weight, reference["layer4.1.conv2.weight"])
    # a training checkpoint: {"epoch", "state_dict"} with DDP prefixes and no num_batches_tracked buffers
    wrapped = {
        "epoch": 3,
        "state_dict": {f"module.{k}": v for k, v in reference.items() if not k.endswith("num_batches_tracked")},
    }
    wrapped_path = tmp_path / "ckpt.pth"
    torch.save(wrapped, wrapped_path)
    assert torch.equal(resnet18(weights=wrapped_path).conv1.weight, reference["conv1.weight"])
    torch.save({"model": reference}, wrapped_path)
    assert torch.equal(resnet18(weights=wrapped_path).bn1.bias, reference["bn1.bias"])


def test_local_file_mismatch_errors(tmp_path: Path) -> None:
    state = resnet18().state_dict()
    missing = {k: v for k, v in state.items() if not k.startswith("layer4.")}
    path = tmp_path / "bad.pth"
    torch.save(missing, path)
    with pytest.raises(ValueError, match=r"missing keys \(layer4\.0\.conv1\.weight") as info:
        resnet18(weights=path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)

    torch.save({**state, "head.extra": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match=r"1 unexpected keys \(head\.extra\)"):
        resnet18(weights=path)

    torch.save({**state, "conv1.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(ValueError, match=r"'conv1\.weight' has shape \(64, 3, 3, 3\), expected \(64, 3, 7, 7\)"):
        resnet18(weights=path)

    torch.save({"epoch": 1, "note": "no weights here"}, path)
    with pytest.raises(ValueError, match="entry 'epoch' is a int, expected a tensor"):
        resnet18(weights=path)


def test_missing_file_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="expected None, 'imagenet' or the path"):
        resnet18(weights=tmp_path / "nope.pth")


def test_imagenet_offline_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError) as info:
        resnet18(weights="imagenet")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("could not download the ImageNet weights for resnet18")
    assert "resnet18-f37072fd.pth" in message
    assert "model.backbone.weights=/path/to/resnet18-f37072fd.pth" in message
    assert isinstance(info.value.__cause__, urllib.error.URLError)


def test_imagenet_weights_use_the_torchvision_api(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(3)
    reference = torchvision.models.resnet18().state_dict()
    requested: list[str] = []

    def fake_download(url: str, *args: object, **kwargs: object) -> dict[str, torch.Tensor]:
        requested.append(url)
        return reference

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", fake_download)
    backbone = resnet18(weights="imagenet")
    assert requested == [ResNet18_Weights.IMAGENET1K_V1.url]
    assert torch.equal(backbone.layer2[0].downsample[0].weight, reference["layer2.0.downsample.0.weight"])
