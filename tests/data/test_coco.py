"""Tests for centernet.data.coco.CocoDetection on tiny hand-written COCO files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from centernet.data.coco import CocoDetection

# Image 1: 20x30 (h x w) with a cat, a crowd of cats and a bird; image 2: 12x16 with a dog;
# image 3: 10x10 without annotations. Category ids are non-contiguous: 3 cat, 5 bird, 7 dog.
CATEGORIES = [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}, {"id": 5, "name": "bird"}]
IMAGES = [
    {"id": 1, "file_name": "a.png", "height": 20, "width": 30},
    {"id": 2, "file_name": "b.png", "height": 12, "width": 16},
    {"id": 3, "file_name": "c.png", "height": 10, "width": 10},
]
ANNOTATIONS = [
    {"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 3, 4], "area": 12, "iscrowd": 0},
    {"id": 2, "image_id": 1, "category_id": 3, "bbox": [10, 5, 8, 6], "area": 48, "iscrowd": 1},
    {"id": 3, "image_id": 1, "category_id": 5, "bbox": [20.5, 0, 4.5, 9], "area": 40.5, "iscrowd": 0},
    {"id": 4, "image_id": 2, "category_id": 7, "bbox": [0, 0, 16, 12], "area": 192, "iscrowd": 0},
]


def _write_dataset(root: Path, annotations: list[dict[str, Any]] | None = None) -> tuple[Path, Path]:
    """Write the images (distinct pixel patterns) and the annotation file; return (ann_file, img_dir)."""
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    for info in IMAGES:
        h, w = info["height"], info["width"]
        image = (np.arange(h * w * 3, dtype=np.int64).reshape(h, w, 3) * (info["id"] + 1) % 256).astype(np.uint8)
        assert cv2.imwrite(str(img_dir / info["file_name"]), image)
    data = {
        "images": IMAGES,
        "annotations": ANNOTATIONS if annotations is None else annotations,
        "categories": CATEGORIES,
    }
    ann_file = root / "instances.json"
    ann_file.write_text(json.dumps(data), encoding="utf-8")
    return ann_file, img_dir


@pytest.fixture
def dataset_files(tmp_path: Path) -> tuple[Path, Path]:
    return _write_dataset(tmp_path)


@dataclass
class _Resized:
    image: np.ndarray
    boxes: np.ndarray
    center: np.ndarray
    scale: float
    flipped: bool


class _ResizeFlip:
    """Stand-in transform: resize to 8x8 and flip horizontally when ``rng.random() < 0.5``."""

    size = 8

    def __call__(self, image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator) -> _Resized:
        h, w = image.shape[:2]
        flipped = bool(rng.random() < 0.5)
        if flipped:
            image = image[:, ::-1]
            boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1)
        out = cv2.resize(np.ascontiguousarray(image), (self.size, self.size), interpolation=cv2.INTER_NEAREST)
        factor = np.array([self.size / w, self.size / h] * 2, dtype=np.float32)
        return _Resized(out, boxes * factor, np.array([w / 2, h / 2]), float(max(h, w)), flipped)


def test_label_mapping_round_trip(dataset_files: tuple[Path, Path]) -> None:
    ds = CocoDetection(*dataset_files)
    assert ds.label_to_category_id == [3, 5, 7]  # sorted by category id
    assert ds.class_names == ["cat", "bird", "dog"]
    assert ds.num_classes == 3
    for label, cat in enumerate(ds.label_to_category_id):
        assert ds.category_id_to_label[cat] == label
    raw = ds.load_raw(0)
    cats = [ds.label_to_category_id[label] for label in raw["labels"]]
    assert cats == [a["category_id"] for a in ANNOTATIONS if a["image_id"] == 1]


def test_load_raw_boxes_labels_ignore(dataset_files: tuple[Path, Path]) -> None:
    ds = CocoDetection(*dataset_files)
    assert ds.image_ids == [1, 2, 3]
    assert len(ds) == 3
    raw = ds.load_raw(0)
    # [x, y, w, h] -> [x1, y1, x2, y2] by hand.
    expected = np.array([[1, 2, 4, 6], [10, 5, 18, 11], [20.5, 0, 25, 9]], dtype=np.float32)
    assert raw["boxes"].dtype == np.float32
    np.testing.assert_array_equal(raw["boxes"], expected)
    assert raw["labels"].dtype == np.int64
    np.testing.assert_array_equal(raw["labels"], [0, 0, 1])
    np.testing.assert_array_equal(raw["ignore"], [False, True, False])  # iscrowd -> ignore region
    assert raw["image"].dtype == np.uint8 and raw["image"].shape == (20, 30, 3)
    assert raw["image_id"] == 1 and raw["file_name"] == "a.png"
    expected_pixels = cv2.imread(str(dataset_files[1] / "a.png"), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(raw["image"], expected_pixels)


def test_image_without_annotations(dataset_files: tuple[Path, Path]) -> None:
    ds = CocoDetection(*dataset_files, transform=_ResizeFlip())
    raw = ds.load_raw(2)
    assert raw["boxes"].shape == (0, 4) and raw["boxes"].dtype == np.float32
    assert raw["labels"].shape == (0,) and raw["labels"].dtype == np.int64
    assert raw["ignore"].shape == (0,) and raw["ignore"].dtype == bool
    sample = ds[2]
    assert sample["boxes"].shape == (0, 4) and sample["labels"].shape == (0,)
    assert sample["image"].shape == (3, 8, 8)


def test_getitem_without_transform_round_trips_the_raw_image(dataset_files: tuple[Path, Path]) -> None:
    ds = CocoDetection(*dataset_files)
    sample = ds[0]
    raw = ds.load_raw(0)
    assert sample["image"].dtype == torch.uint8 and sample["image"].shape == (3, 20, 30)
    np.testing.assert_array_equal(sample["image"].permute(1, 2, 0).numpy(), raw["image"])
    assert sample["boxes"].dtype == torch.float32
    np.testing.assert_array_equal(sample["boxes"].numpy(), raw["boxes"])
    assert sample["labels"].dtype == torch.int64 and sample["ignore"].dtype == torch.bool
    assert sample["meta"] == {
        "image_id": 1, "file_name": "a.png", "orig_size": (20, 30), "center": (15.0, 10.0),
        "scale": 30.0, "flipped": False,
    }
    assert ds[-1]["meta"]["image_id"] == 3
    with pytest.raises(IndexError, match="index 3 out of range"):
        ds[3]


def test_transform_output_and_meta(dataset_files: tuple[Path, Path]) -> None:
    ds = CocoDetection(*dataset_files, transform=_ResizeFlip(), seed=5)
    sample = ds[1]  # 12x16 image, dog box covering the whole image
    assert sample["image"].shape == (3, 8, 8)
    np.testing.assert_allclose(sample["boxes"].numpy(), [[0, 0, 8, 8]])
    flipped = bool(np.random.default_rng([5, 0, 1]).random() < 0.5)
    assert sample["meta"]["flipped"] is flipped
    assert sample["meta"]["center"] == (8.0, 6.0) and sample["meta"]["scale"] == 16.0
    assert sample["meta"]["orig_size"] == (12, 16)


def test_rng_is_deterministic_per_seed_epoch_index(dataset_files: tuple[Path, Path]) -> None:
    draws: list[float] = []

    def recording(image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator) -> _Resized:
        draws.append(float(rng.random()))
        return _ResizeFlip()(image, boxes, np.random.default_rng(0))

    ds = CocoDetection(*dataset_files, transform=recording, seed=11)
    ds[0]
    ds[1]
    ds.set_epoch(3)
    ds[0]
    ds[(0, 0)]  # explicit (epoch, index) overrides the current epoch
    again = CocoDetection(*dataset_files, transform=recording, seed=11)  # e.g. another worker
    again.set_epoch(3)
    again[0]
    expected = [np.random.default_rng(key).random() for key in ([11, 0, 0], [11, 0, 1], [11, 3, 0])]
    assert draws == [expected[0], expected[1], expected[2], expected[0], expected[2]]
    assert len(set(expected)) == 3


def test_classes_restrict_and_order(dataset_files: tuple[Path, Path]) -> None:
    ds = CocoDetection(*dataset_files, classes=["dog", "cat"])
    assert ds.class_names == ["dog", "cat"]
    assert ds.label_to_category_id == [7, 3]
    raw = ds.load_raw(0)  # the bird is dropped
    np.testing.assert_array_equal(raw["labels"], [1, 1])
    np.testing.assert_array_equal(raw["ignore"], [False, True])
    np.testing.assert_array_equal(ds.load_raw(1)["labels"], [0])
    assert len(ds) == 3  # images left without annotations are kept


def test_classes_unknown_name_lists_dataset_names(dataset_files: tuple[Path, Path]) -> None:
    with pytest.raises(ValueError, match=r"unknown class name\(s\) \['horse'\].*\['cat', 'bird', 'dog'\]"):
        CocoDetection(*dataset_files, classes=["cat", "horse"])
    with pytest.raises(ValueError, match=r"\['cat'\] more than once"):
        CocoDetection(*dataset_files, classes=["cat", "cat"])


def test_empty_dataset(tmp_path: Path) -> None:
    ann_file = tmp_path / "empty.json"
    ann_file.write_text(json.dumps({"images": [], "categories": []}), encoding="utf-8")
    ds = CocoDetection(ann_file, tmp_path)
    assert len(ds) == 0 and ds.class_names == [] and ds.label_to_category_id == []
    with pytest.raises(IndexError):
        ds[0]


def test_zero_annotation_ids_are_renumbered(tmp_path: Path) -> None:
    anns = [dict(a, id=i) for i, a in enumerate(ANNOTATIONS)]  # ids start at 0
    ann_file, img_dir = _write_dataset(tmp_path, anns)
    ds = CocoDetection(ann_file, img_dir)
    assert sorted(ds.coco.getAnnIds()) == [1, 2, 3, 4]
    np.testing.assert_array_equal(ds.load_raw(0)["labels"], [0, 0, 1])


def test_missing_annotation_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError, match=f"COCO annotation file not found: {missing}"):
        CocoDetection(missing, tmp_path)


def test_corrupt_annotation_json(tmp_path: Path) -> None:
    ann_file = tmp_path / "bad.json"
    ann_file.write_text('{"images": [\n  {"id": 1,,}\n]}', encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{ann_file} is not valid JSON: .* line 2 column 12"):
        CocoDetection(ann_file, tmp_path)
    ann_file.write_text('{"images": []}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"missing key\(s\) \['categories'\]"):
        CocoDetection(ann_file, tmp_path)


def test_missing_image_file(dataset_files: tuple[Path, Path]) -> None:
    ann_file, img_dir = dataset_files
    (img_dir / "b.png").unlink()
    ds = CocoDetection(ann_file, img_dir)  # only checked at load time
    with pytest.raises(FileNotFoundError, match=rf"image file not found: {img_dir / 'b.png'} \(image id 2\)"):
        ds[1]


def test_corrupt_image_file(dataset_files: tuple[Path, Path]) -> None:
    ann_file, img_dir = dataset_files
    (img_dir / "c.png").write_bytes(b"this is not a png")
    ds = CocoDetection(ann_file, img_dir)
    with pytest.raises(ValueError, match=rf"could not decode image file {img_dir / 'c.png'} \(image id 3\)"):
        ds.load_raw(2)


def test_transform_dropping_boxes_is_an_error(dataset_files: tuple[Path, Path]) -> None:
    def dropping(image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator) -> _Resized:
        return _Resized(image, boxes[:0], np.zeros(2), 1.0, False)

    ds = CocoDetection(*dataset_files, transform=dropping)
    with pytest.raises(ValueError, match="returned 0 boxes for 3 input boxes"):
        ds[0]


def test_with_real_val_transform(dataset_files: tuple[Path, Path]) -> None:
    transforms = pytest.importorskip("centernet.data.transforms")
    if not hasattr(transforms, "ValTransform"):
        pytest.skip("centernet.data.transforms.ValTransform not available yet")
    ds = CocoDetection(*dataset_files, transform=transforms.ValTransform(input_size=(16, 16), channel_order="bgr"))
    sample = ds[0]  # 20x30 image: c = (15, 10), s = 30, a factor 16/30 and a vertical offset
    assert sample["image"].shape == (3, 16, 16) and sample["image"].dtype == torch.uint8
    assert sample["meta"]["center"] == (15.0, 10.0) and sample["meta"]["scale"] == 30.0
    factor = 16.0 / 30.0
    pad_y = (16 - 20 * factor) / 2
    raw = ds.load_raw(0)["boxes"]
    expected = raw * factor + np.array([0, pad_y, 0, pad_y], dtype=np.float32)
    np.testing.assert_allclose(sample["boxes"].numpy(), expected, atol=1e-4)
