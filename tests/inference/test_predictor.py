"""Detector: checkpoint round trip, outputs equal to the pieces run by hand, hand-computed mapping."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from centernet.config import Config, config_to_dict, load_config
from centernet.data.normalize import ImageNormalizer
from centernet.data.transforms import ValTransform
from centernet.decode import decode_detections, detections_to_image
from centernet.engine.checkpoint import load_checkpoint, save_checkpoint
from centernet.inference.predictor import Detections, Detector
from centernet.models.build import build_model

REPO = Path(__file__).resolve().parents[2]
CLASS_NAMES = ["circle", "square", "triangle", "cross", "ellipse"]
TINY_OVERRIDES = ["data.input_size=[64,64]", "model.neck.channels=[16,16,16]", "model.head.head_conv=8",
                  "runtime.amp=off"]


def tiny_config(*extra: str) -> Config:
    return load_config(REPO / "configs" / "shapes_resnet18.yaml", [*TINY_OVERRIDES, *extra])


def write_checkpoint(path: Path, cfg: Config, *, drop: tuple[str, ...] = (), seed: int = 0) -> Path:
    """A random-init tiny model saved like the trainer does (model/config/class_names/label_to_category_id)."""
    torch.manual_seed(seed)
    model = build_model(cfg, len(CLASS_NAMES))
    state = {
        "model": model.state_dict(),
        "config": config_to_dict(cfg),
        "class_names": list(CLASS_NAMES),
        "label_to_category_id": [1, 2, 3, 4, 5],
    }
    save_checkpoint({k: v for k, v in state.items() if k not in drop}, path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth", tiny_config())


@pytest.fixture(scope="module")
def detector(checkpoint: Path) -> Detector:
    return Detector.from_checkpoint(checkpoint, device="cpu", topk=7)


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_from_checkpoint_reads_config_and_names(detector: Detector) -> None:
    assert detector.class_names == tuple(CLASS_NAMES)
    assert detector.category_ids == (1, 2, 3, 4, 5)
    assert detector.transform.input_size == (64, 64)
    assert not detector.model.training
    assert detector.amp == "off"


def test_output_types_shapes_and_order(detector: Detector) -> None:
    dets = detector(random_image(40, 72))
    assert isinstance(dets, Detections) and len(dets) == 7
    assert dets.boxes.shape == (7, 4) and dets.boxes.dtype == np.float32
    assert dets.scores.shape == (7,) and dets.scores.dtype == np.float32
    assert dets.labels.shape == (7,) and dets.labels.dtype == np.int64
    assert np.all(np.diff(dets.scores) <= 0)
    assert np.all((dets.labels >= 0) & (dets.labels < len(CLASS_NAMES)))
    assert np.all((dets.scores > 0) & (dets.scores < 1))


def test_matches_pieces_by_hand_on_non_square_image(detector: Detector, checkpoint: Path) -> None:
    image = random_image(40, 72, seed=1)
    got = detector(image)
    cfg = tiny_config()
    model = build_model(cfg, len(CLASS_NAMES))
    model.load_state_dict(load_checkpoint(checkpoint)["model"])
    model.eval()
    sample = ValTransform(input_size=cfg.data.input_size, channel_order=cfg.data.channel_order)(image)
    assert sample.scale == 72.0 and np.allclose(sample.center, [36.0, 20.0])
    normalizer = ImageNormalizer(cfg.data.mean, cfg.data.std, channels_last=cfg.runtime.channels_last)
    with torch.inference_mode():
        inputs = normalizer(torch.from_numpy(sample.image).permute(2, 0, 1)[None])
        maps = model(inputs)
        rows = decode_detections(maps["heatmap"], maps["size"], maps["offset"], k=7)[0]
    expected = detections_to_image(rows, sample.center, sample.scale, maps["heatmap"].shape[-2:])
    np.testing.assert_allclose(got.boxes, expected[:, :4], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got.scores, expected[:, 4], rtol=1e-6)
    np.testing.assert_array_equal(got.labels, expected[:, 5].astype(np.int64))


def test_deterministic_and_batch_equals_single(detector: Detector) -> None:
    images = [random_image(40, 72, seed=2), random_image(50, 30, seed=3)]
    first, second = detector(images[0]), detector(images[0])
    np.testing.assert_array_equal(first.boxes, second.boxes)
    np.testing.assert_array_equal(first.scores, second.scores)
    batch = detector.predict_batch(images)
    for single, batched in zip((first, detector(images[1])), batch, strict=True):
        np.testing.assert_allclose(batched.boxes, single.boxes, atol=1e-4)
        np.testing.assert_allclose(batched.scores, single.scores, atol=1e-6)


def test_empty_batch(detector: Detector) -> None:
    assert detector.predict_batch([]) == []


def test_flip_runs(checkpoint: Path) -> None:
    dets = Detector.from_checkpoint(checkpoint, device="cpu", flip=True, topk=3)(random_image(33, 20))
    assert dets.boxes.shape == (3, 4) and np.all(np.diff(dets.scores) <= 0)


class PeakModel(nn.Module):
    """Fake detector: one heatmap peak (class 1 at cell x=5, y=6), offset (0.5, 0.25), size (2, 3)."""

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        batch, _, height, width = images.shape
        grid = (batch, height // 4, width // 4)
        heat = torch.full((grid[0], 2, grid[1], grid[2]), -10.0)
        heat[:, 1, 6, 5] = 10.0
        size = torch.stack([torch.full(grid, 2.0), torch.full(grid, 3.0)], dim=1)
        offset = torch.stack([torch.full(grid, 0.5), torch.full(grid, 0.25)], dim=1)
        return {"heatmap": heat, "size": size, "offset": offset}


def peak_detector(topk: int = 1) -> Detector:
    return Detector(PeakModel(), class_names=["a", "b"], input_size=(64, 64), channel_order="rgb",
                    mean=[0.5] * 3, std=[0.25] * 3, device=torch.device("cpu"), topk=topk)


def test_hand_computed_box_in_image_pixels() -> None:
    # Image 32 x 64: centre (32, 16), scale 64 -> 4 image pixels per output cell, y shifted by
    # (64 - 32) / 2 = 16 pixels of padding. Grid box [4.5, 4.75, 6.5, 7.75] -> image [18, 3, 26, 15].
    dets = peak_detector()(np.zeros((32, 64, 3), dtype=np.uint8))
    np.testing.assert_allclose(dets.boxes, [[18.0, 3.0, 26.0, 15.0]], atol=1e-4)
    np.testing.assert_array_equal(dets.labels, [1])
    np.testing.assert_allclose(dets.scores, [torch.sigmoid(torch.tensor(10.0)).item()], rtol=1e-6)


def test_heatmap_is_aligned_with_the_image() -> None:
    # Output grid 16 x 16 covers the padded 64 x 64 square; the image is rows 4..11 of it.
    heat = peak_detector().heatmap(np.zeros((32, 64, 3), dtype=np.uint8))
    assert heat.shape == (2, 8, 16) and heat.dtype == np.float32
    assert np.unravel_index(np.argmax(heat), heat.shape) == (1, 6 - 4, 5)
    assert 0.0 <= heat.min() and heat.max() <= 1.0


def test_above_threshold_keeps_order() -> None:
    rows = np.array([[0, 0, 1, 1, 0.9, 1], [0, 0, 2, 2, 0.5, 0], [0, 0, 3, 3, 0.1, 1]], dtype=np.float32)
    dets = Detections.from_rows(rows, ["a", "b"]).above(0.5)
    np.testing.assert_array_equal(dets.scores, np.array([0.9, 0.5], dtype=np.float32))
    np.testing.assert_array_equal(dets.labels, [1, 0])
    assert len(Detections.from_rows(np.zeros((0, 6)), ["a"])) == 0


def test_checkpoint_without_config(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "noconfig.pth", tiny_config(), drop=("config",))
    with pytest.raises(ValueError, match=r"noconfig\.pth has no 'config'"):
        Detector.from_checkpoint(path, device="cpu")
    assert Detector.from_checkpoint(path, config=tiny_config(), device="cpu").num_classes == len(CLASS_NAMES)


def test_checkpoint_without_class_names(tmp_path: Path) -> None:
    path = write_checkpoint(tmp_path / "nonames.pth", tiny_config(), drop=("class_names",))
    with pytest.raises(ValueError, match=r"nonames\.pth has no usable 'class_names'"):
        Detector.from_checkpoint(path, device="cpu")


def test_config_that_does_not_fit(checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="does not fit the model") as caught:
        Detector.from_checkpoint(checkpoint, config=tiny_config("model.head.head_conv=4"), device="cpu")
    message = str(caught.value)
    assert "checkpoint holds resnet18+deconv_lateral (neck channels [16, 16, 16], head_conv 8), 5 classes" in message
    assert "the config builds resnet18+deconv_lateral (neck channels [16, 16, 16], head_conv 4)" in message
    assert "head.heatmap.0.weight [8, 16, 3, 3] in the checkpoint, [4, 16, 3, 3] in the model" in message


def test_fp16_falls_back_on_cpu(checkpoint: Path) -> None:
    assert Detector.from_checkpoint(checkpoint, device="cpu", amp="fp16").amp == "off"


def test_bad_image_names_its_index(detector: Detector) -> None:
    with pytest.raises(ValueError, match="image 1: image must be uint8"):
        detector.predict_batch([random_image(8, 8), np.zeros((8, 8, 3), dtype=np.float32)])


def test_pretrained_backbone_weights_are_not_fetched(tmp_path: Path) -> None:
    cfg = tiny_config()
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(
        cfg.model, backbone=dataclasses.replace(cfg.model.backbone, weights=str(tmp_path / "absent.pth"))))
    path = write_checkpoint(tmp_path / "w.pth", tiny_config())
    # The stored weights replace the backbone's, so a missing pretrained file does not matter.
    assert Detector.from_checkpoint(path, config=cfg, device="cpu").num_classes == len(CLASS_NAMES)
