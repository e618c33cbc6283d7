"""augment.albumentations: boxes follow each geometric transform, labels and ignore flags follow their box,
colours see RGB, samples depend only on (seed, epoch, index), and bad entries fail with one line."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from centernet.config import ConfigError, load_config
from centernet.data.build import build_dataset, build_transform
from centernet.data.transforms.albumentations_chain import AlbumentationsChain
from tests.conftest import REPO
from tests.data.test_build import epoch_batches

HEIGHT, WIDTH = 40, 60
BOX = [5.0, 10.0, 25.0, 20.0]  # continuous xyxy: pixel columns 5..24, rows 10..19


def painted_image() -> np.ndarray:
    """A BGR noise image (so that every rotation looks different) with the box area painted white."""
    image = np.random.default_rng(0).integers(0, 100, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    x1, y1, x2, y2 = (int(v) for v in BOX)
    image[y1:y2, x1:x2] = 255
    return image


def white_extent(image: np.ndarray) -> list[float]:
    """Continuous xyxy extent of the white pixels."""
    ys, xs = np.nonzero(image.min(axis=2) == 255)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def run_chain(specs: list[dict], seed: int = 0, **bbox: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    chain = AlbumentationsChain(specs, **bbox)
    return chain(painted_image(), np.array([BOX], dtype=np.float32), np.random.default_rng(seed))


@pytest.mark.parametrize(
    ("name", "expected_shape", "expected_box"),
    [
        ("HorizontalFlip", (HEIGHT, WIDTH), [60 - 25, 10, 60 - 5, 20]),  # x -> W - x
        ("VerticalFlip", (HEIGHT, WIDTH), [5, 40 - 20, 25, 40 - 10]),  # y -> H - y
        ("Transpose", (WIDTH, HEIGHT), [10, 5, 20, 25]),  # (x, y) -> (y, x)
    ],
)
def test_flips_and_transpose_move_the_box_with_the_pixels(name: str, expected_shape: tuple, expected_box: list) -> None:
    image, boxes, kept = run_chain([{"type": name, "p": 1.0}])
    assert image.shape[:2] == expected_shape
    np.testing.assert_allclose(boxes, [expected_box], atol=1e-4)
    assert white_extent(image) == expected_box
    assert kept.tolist() == [0] and boxes.dtype == np.float32


def test_random_rotate90_every_quarter_turn_lands_where_hand_computed() -> None:
    x1, y1, x2, y2 = BOX
    expected = {  # np.rot90 turns counter-clockwise k times
        0: [x1, y1, x2, y2],
        1: [y1, WIDTH - x2, y2, WIDTH - x1],
        2: [WIDTH - x2, HEIGHT - y2, WIDTH - x1, HEIGHT - y1],
        3: [HEIGHT - y2, x1, HEIGHT - y1, x2],
    }
    source = painted_image()
    seen = set()
    for seed in range(24):
        image, boxes, _ = run_chain([{"type": "RandomRotate90", "p": 1.0}], seed=seed)
        (turns,) = [k for k in range(4) if np.array_equal(image, np.rot90(source, k))]
        np.testing.assert_allclose(boxes, [expected[turns]], atol=1e-4)
        assert white_extent(image) == expected[turns]
        seen.add(turns)
    assert seen == {0, 1, 2, 3}


def test_affine_scale_about_the_image_centre_and_min_visibility() -> None:
    # scale s about (W/2, H/2) = (30, 20): x -> 30 + s (x - 30), y -> 20 + s (y - 20)
    _, boxes, _ = run_chain([{"type": "Affine", "scale": 0.5, "p": 1.0}])
    np.testing.assert_allclose(boxes, [[17.5, 15, 27.5, 20]], atol=1e-4)
    # s = 2 gives [-20, 0, 20, 20]: clipped to [0, 0, 20, 20], half of its 40 x 20 area stays visible
    _, boxes, kept = run_chain([{"type": "Affine", "scale": 2.0, "p": 1.0}], min_visibility=0.45)
    np.testing.assert_allclose(boxes, [[0, 0, 20, 20]], atol=1e-4)
    assert kept.tolist() == [0]
    _, boxes, kept = run_chain([{"type": "Affine", "scale": 2.0, "p": 1.0}], min_visibility=0.55)
    assert boxes.shape == (0, 4) and kept.tolist() == []


def test_min_area_drops_small_boxes_and_keeps_the_row_order() -> None:
    chain = AlbumentationsChain([{"type": "VerticalFlip", "p": 1.0}], min_area=50)
    boxes = np.array([[0, 0, 10, 10], [0, 0, 7, 7], [20, 20, 30, 28]], dtype=np.float32)  # areas 100, 49, 80
    _, out, kept = chain(painted_image(), boxes, np.random.default_rng(0))
    assert kept.tolist() == [0, 2]
    np.testing.assert_allclose(out, [[0, 30, 10, 40], [20, 12, 30, 20]], atol=1e-4)


def test_colour_transforms_see_rgb() -> None:
    """RGBShift adds to the red channel, which is the last one of the loader's BGR image."""
    spec = {"type": "RGBShift", "r_shift_limit": [50, 50], "g_shift_limit": 0, "b_shift_limit": 0, "p": 1.0}
    source = painted_image()
    sticking_out = np.array([[-5, -5, 70, 50], BOX], dtype=np.float32)
    image, boxes, kept = AlbumentationsChain([spec])(source, sticking_out, np.random.default_rng(0))
    delta = image.astype(np.int32) - source.astype(np.int32)
    below = source[..., 2] < 200  # no saturation
    assert (delta[..., 2][below] == 50).all()
    assert (delta[..., :2] == 0).all()
    np.testing.assert_array_equal(boxes, sticking_out)  # colour only: boxes neither clipped nor filtered
    assert kept.tolist() == [0, 1]


def test_each_transform_draws_its_own_decisions() -> None:
    """Two p=0.5 flips fire independently (one shared seed would make them fire together)."""
    chain = AlbumentationsChain([{"type": "HorizontalFlip", "p": 0.5}, {"type": "VerticalFlip", "p": 0.5}])
    source = painted_image()
    combos = set()
    for seed in range(40):
        image, _, _ = chain(source, np.zeros((0, 4), np.float32), np.random.default_rng(seed))
        flips = [(h, v) for h in (0, 1) for v in (0, 1)
                 if np.array_equal(image, source[:: -1 if v else 1, :: -1 if h else 1])]
        combos.update(flips)
    assert combos == {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_same_generator_same_sample_and_pickled_chain_agrees() -> None:
    specs = [{"type": "RandomRotate90", "p": 0.5}, {"type": "HueSaturationValue", "p": 1.0},
             {"type": "RandomBrightnessContrast", "p": 1.0}]
    chain = AlbumentationsChain(specs)
    copy = pickle.loads(pickle.dumps(chain))
    boxes = np.array([BOX], dtype=np.float32)
    first = chain(painted_image(), boxes, np.random.default_rng([3, 1, 7]))
    again = copy(painted_image(), boxes, np.random.default_rng([3, 1, 7]))
    other = chain(painted_image(), boxes, np.random.default_rng([3, 2, 7]))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


# ------------------------------------------------------------------ through the dataset


def write_three_object_set(root: Path) -> tuple[Path, Path]:
    """A 48 x 48 PNG with a cat, a crowd of dogs (ignore region) and a bird near the bottom-right."""
    root.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(1).integers(0, 256, size=(48, 48, 3), dtype=np.uint8)
    assert cv2.imwrite(str(root / "a.png"), image)
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 8, 8], "area": 64, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [20, 6, 10, 10], "area": 100, "iscrowd": 1},
        {"id": 3, "image_id": 1, "category_id": 3, "bbox": [26, 24, 12, 12], "area": 144, "iscrowd": 0},
    ]
    data = {
        "images": [{"id": 1, "file_name": "a.png", "height": 48, "width": 48}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "bird"}],
    }
    ann_file = root / "instances.json"
    ann_file.write_text(json.dumps(data), encoding="utf-8")
    return ann_file, root


def identity_warp_config(tmp_path: Path, ann_file: Path, img_dir: Path, chain: str, min_visibility: float) -> Path:
    """Train config whose CenterNet warp is the identity on a 32 x 32 image (no crop, jitter, flip, colour)."""
    path = tmp_path / "albu.yaml"
    path.write_text(
        f"data:\n  train: {{type: coco, ann_file: {ann_file}, img_dir: {img_dir}}}\n  input_size: [32, 32]\n"
        "augment:\n  random_crop: false\n  scale_jitter: 0.0\n  shift_jitter: 0.0\n  flip_prob: 0.0\n"
        f"  color_jitter: false\n  pca_lighting_std: 0.0\n  albumentations: {chain}\n"
        f"  albumentations_bbox: {{min_visibility: {min_visibility}}}\n"
    )
    return path


@pytest.mark.parametrize(
    ("min_visibility", "labels", "ignore", "boxes"),
    [
        # crop to [0, 32) x [0, 32): the bird keeps 6 x 8 of 12 x 12 (0.33); then x -> 32 - x
        (0.5, ["cat", "dog"], [False, True], [[20, 4, 28, 12], [2, 6, 12, 16]]),
        (0.3, ["cat", "dog", "bird"], [False, True, False], [[20, 4, 28, 12], [2, 6, 12, 16], [0, 24, 6, 32]]),
    ],
)
def test_labels_and_ignore_regions_follow_their_boxes(
    tmp_path: Path, min_visibility: float, labels: list[str], ignore: list[bool], boxes: list[list[float]]
) -> None:
    ann_file, img_dir = write_three_object_set(tmp_path / "set")
    chain = "[{type: Crop, x_min: 0, y_min: 0, x_max: 32, y_max: 32}, {type: HorizontalFlip, p: 1.0}]"
    cfg = load_config(identity_warp_config(tmp_path, ann_file, img_dir, chain, min_visibility))
    dataset = build_dataset(cfg, "train")
    sample = dataset[0]
    assert [dataset.class_names[i] for i in sample["labels"].tolist()] == labels
    assert sample["ignore"].tolist() == ignore
    np.testing.assert_allclose(sample["boxes"].numpy(), boxes, atol=1e-3)
    source = cv2.imread(str(img_dir / "a.png"))
    expected_pixels = cv2.cvtColor(source[:32, :32][:, ::-1], cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(sample["image"].permute(1, 2, 0).numpy(), expected_pixels)


def test_the_documented_example_loads(tmp_path: Path) -> None:
    text = (REPO / "docs" / "augmentation.md").read_text()
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "example.yaml"
    path.write_text(example)
    transform = build_transform(load_config(path), "train")
    assert transform.albumentations is not None
    assert [type(t).__name__ for t in transform.albumentations.transforms] == [
        "RandomRotate90", "VerticalFlip", "HueSaturationValue", "RandomBrightnessContrast"
    ]
    assert (transform.albumentations.min_visibility, transform.albumentations.min_area) == (0.3, 16.0)


def test_no_chain_when_the_list_is_empty(tiny_config: Callable[..., Path]) -> None:
    cfg = load_config(tiny_config())
    assert cfg.augment.albumentations == []
    assert build_transform(cfg, "train").albumentations is None


def test_loader_workers_give_the_main_process_samples(tiny_config: Callable[..., Path]) -> None:
    extra = "augment:\n  albumentations: [{type: RandomRotate90}, {type: HueSaturationValue, p: 0.8}]\n"
    config = tiny_config(extra, name="albu.yaml")
    in_process = epoch_batches(config, workers=0, epochs=2)
    in_workers = epoch_batches(config, workers=2, epochs=2)
    for epoch in range(2):
        for a, b in zip(in_process[epoch], in_workers[epoch], strict=True):
            assert torch.equal(a, b)
    assert not torch.equal(in_process[0][0], in_process[1][0])


# ------------------------------------------------------------------ bad entries


@pytest.mark.parametrize(
    ("chain", "message"),
    [
        ("[{type: RandomRotate9}]",
         "augment.albumentations[0].type: 'RandomRotate9' is not an albumentations transform "
         "(did you mean 'RandomRotate90'"),
        ("[{type: VerticalFlip}, {type: HueSaturationValue, hue_shift: 10}]",
         "augment.albumentations[1].hue_shift: not an argument of HueSaturationValue "
         "(did you mean 'hue_shift_limit'?)"),
        ("[{type: HueSaturationValue, hue_shift_limit: [1, 2, 3]}]",
         "augment.albumentations[0].hue_shift_limit: [1, 2, 3] is not valid for HueSaturationValue"),
        ("[{type: RandomRotate90, p: 2}]", "augment.albumentations[0].p: 2 is not valid for RandomRotate90"),
        ("[{type: Normalize}]", "augment.albumentations[0].type: Normalize cannot be used here"),
        ("[{type: Mosaic}]", "augment.albumentations[0].type: Mosaic needs the extra input(s) ['mosaic_metadata']"),
        ("[{p: 1}]", "augment.albumentations[0]: expected a mapping with a 'type'"),
        ("[VerticalFlip]", "augment.albumentations[0]: expected a mapping, got str 'VerticalFlip'"),
    ],
)
def test_bad_entries_fail_at_load_time_with_one_line(tmp_path: Path, chain: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"augment: {{albumentations: {chain}}}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{path}: ") and message in text, text


def test_bad_box_filter_settings(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("augment: {albumentations: [{type: VerticalFlip}], albumentations_bbox: {min_visibility: 1.5}}\n")
    with pytest.raises(ConfigError, match=r"augment.albumentations_bbox.min_visibility: expected a fraction"):
        load_config(path)
