"""Detector inference optimisations: fp32 steps keep the boxes of the original CenterNet recipe."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import centernet.inference.optimize as optimize
from benchmarks.reference.original_inference import OriginalDetector, as_rows
from benchmarks.synthetic import textured_image
from centernet.inference.optimize import parse_optimizations, plan_optimizations
from centernet.inference.predictor import Detector
from centernet.models import build_centernet
from tests.models.test_fold_bn import _randomise_norms_

BOX_ATOL_PX = 1e-3
INPUT = (128, 128)
MEAN, STD = (0.408, 0.447, 0.470), (0.289, 0.274, 0.278)
NUM_CLASSES = 5
TOPK = 30


def test_parse_optimizations() -> None:
    assert parse_optimizations("fast,compile") == ("fold_bn", "channels_last", "compile")
    assert parse_optimizations(["compile", "fold_bn"]) == ("fold_bn", "compile")
    assert parse_optimizations(None) == () and parse_optimizations("") == ()
    with pytest.raises(ValueError, match="unknown inference optimisation 'fold'"):
        parse_optimizations("fold,channels_last")


def test_bf16_only_where_native(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(optimize, "cpu_has_fast_bf16", lambda: False)
    plan = plan_optimizations("fast,bf16", device=cpu, amp="off", channels_last=False)
    assert plan.steps == ("fold_bn", "channels_last") and plan.amp == "off" and plan.channels_last
    monkeypatch.setattr(optimize, "cpu_has_fast_bf16", lambda: True)
    plan = plan_optimizations("bf16", device=cpu, amp="off", channels_last=False)
    assert plan.steps == ("bf16",) and plan.amp == "bf16" and not plan.channels_last


def _tiny_model() -> torch.nn.Module:
    """A random ResNet-18 CenterNet whose BatchNorm statistics come from images (distinct, spread scores)."""
    torch.manual_seed(5)
    model = build_centernet(
        backbone="resnet18", backbone_weights=None, neck="deconv", neck_channels=(32, 32, 32),
        num_classes=NUM_CLASSES, head_conv=16, prior_prob=0.1,
    )
    _randomise_norms_(model, seed=5)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the calibration batches
    rng = np.random.default_rng(7)
    images = np.stack([textured_image(rng, *INPUT) for _ in range(4)]).astype(np.float32) / 255.0
    with torch.no_grad():
        model.train()(torch.from_numpy(images).permute(0, 3, 1, 2) * 4 - 2)
        model.head.heatmap[-1].weight.normal_(0.0, 0.3)
        model.head.size[-1].weight.normal_(0.0, 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def model_image_reference() -> tuple[torch.nn.Module, np.ndarray, np.ndarray]:
    """The tiny model, a 150 x 110 image and the original recipe's top detections on it."""
    model = _tiny_model()
    image = textured_image(np.random.default_rng(1), 150, 110)
    original = OriginalDetector(
        copy.deepcopy(model), num_classes=NUM_CLASSES, input_size=INPUT, mean=MEAN, std=STD, channel_order="rgb"
    )
    reference = as_rows(original(image))[:TOPK]
    assert (-np.diff(reference[:, 4])).min() > 1e-5  # distinct scores: float rounding cannot flip the order
    return model, image, reference


@pytest.mark.parametrize("steps", [None, "channels_last", "fold_bn", "fast", "fast,compile"])
def test_fp32_optimisations_keep_the_original_boxes(
    steps: str | None, model_image_reference: tuple[torch.nn.Module, np.ndarray, np.ndarray]
) -> None:
    model, image, reference = model_image_reference
    detector = Detector(
        copy.deepcopy(model), class_names=[f"c{i}" for i in range(NUM_CLASSES)], input_size=INPUT,
        channel_order="rgb", mean=MEAN, std=STD, device=torch.device("cpu"), topk=TOPK, optimize=steps,
    )
    assert detector.optimizations == parse_optimizations(steps)
    dets = detector(image)
    assert len(dets) == TOPK
    np.testing.assert_array_equal(dets.labels, reference[:, 5].astype(np.int64))
    np.testing.assert_allclose(dets.boxes, reference[:, :4], rtol=0, atol=BOX_ATOL_PX)
    np.testing.assert_allclose(dets.scores, reference[:, 4], rtol=0, atol=1e-5)
