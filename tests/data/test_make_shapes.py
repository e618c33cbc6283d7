"""Tests for datasets/make_shapes.py (the synthetic shapes set), imported from its path."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from centernet.data.coco import CocoDetection

SCRIPT = Path(__file__).resolve().parents[2] / "datasets" / "make_shapes.py"
COLOR_TOLERANCE = 25  # per channel; pixel noise is sigma 3, the background is >= 100 away


@pytest.fixture(scope="module")
def shapes() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_shapes", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_set(shapes: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shapes")
    shapes.generate_shapes_dataset(out, num_train=6, num_val=3, image_size=(96, 96), seed=0)
    return out


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_layout_and_coco_validity(tiny_set: Path, shapes: ModuleType) -> None:
    assert (tiny_set / shapes.MARKER_NAME).is_file()
    for split, count in (("train", 6), ("val", 3)):
        ann_file = tiny_set / "annotations" / f"instances_{split}.json"
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(ann_file))
        assert sorted(coco.getImgIds()) == list(range(1, count + 1))
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(shapes.CLASS_NAMES)
        assert coco.getCatIds() == list(range(1, len(shapes.CLASS_NAMES) + 1))
        anns = coco.loadAnns(coco.getAnnIds())
        assert [a["id"] for a in anns] == list(range(1, len(anns) + 1))
        for info in coco.loadImgs(coco.getImgIds()):
            image = cv2.imread(str(tiny_set / split / info["file_name"]), cv2.IMREAD_COLOR)
            assert image is not None and image.shape == (96, 96, 3)
        for ann in anns:
            x, y, w, h = ann["bbox"]
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 96 and y + h <= 96
            assert ann["iscrowd"] == 0 and 0 < ann["area"] <= w * h
            assert 1 <= ann["category_id"] <= len(shapes.CLASS_NAMES)
            assert 1 - 0.6 <= ann["visible"] <= 1.0  # no shape is more than 60 % hidden


def test_boxes_are_tight_around_the_drawn_pixels(shapes: ModuleType, tmp_path: Path) -> None:
    # One object per image: no occlusion, so every pixel of the shape's colour is the shape.
    ann_files = shapes.generate_shapes_dataset(
        tmp_path, num_train=8, num_val=0, image_size=(96, 96), seed=3, max_objects=1,
        empty_fraction=0.0, image_format="png",
    )
    data = _load(ann_files["train"])
    assert len(data["annotations"]) == 8
    files = {im["id"]: im["file_name"] for im in data["images"]}
    for ann in data["annotations"]:
        image = cv2.imread(str(tmp_path / "train" / files[ann["image_id"]]), cv2.IMREAD_COLOR)
        close = np.abs(image.astype(np.int32) - np.array(ann["color"])).max(axis=2) <= COLOR_TOLERANCE
        ys, xs = np.nonzero(close)
        x, y, w, h = ann["bbox"]
        # The box is the exact pixel extent: min/max of the shape's pixels, right/bottom exclusive.
        assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == [x, y, x + w, y + h]


def test_draw_masks_hand_computed(shapes: ModuleType) -> None:
    square = np.array([[2.0, 2.0], [6.0, 2.0], [6.0, 6.0], [2.0, 6.0]])
    drawn, full = shapes._draw_masks(square, 0, 10, 10)
    expected = np.zeros((10, 10), bool)
    expected[2:7, 2:7] = True  # vertices are pixel centres, boundary included
    np.testing.assert_array_equal(drawn, expected)
    np.testing.assert_array_equal(full, expected)
    outline, full = shapes._draw_masks(square, 1, 10, 10)
    ring = expected.copy()
    ring[3:6, 3:6] = False
    np.testing.assert_array_equal(outline, ring)
    np.testing.assert_array_equal(full, expected)


def test_deterministic_for_a_seed(shapes: ModuleType, tiny_set: Path, tmp_path: Path) -> None:
    shapes.generate_shapes_dataset(tmp_path / "a", num_train=6, num_val=3, image_size=(96, 96), seed=0)
    for rel in ("annotations/instances_train.json", "annotations/instances_val.json", "train/000004.jpg"):
        assert (tmp_path / "a" / rel).read_bytes() == (tiny_set / rel).read_bytes()
    shapes.generate_shapes_dataset(tmp_path / "b", num_train=6, num_val=3, image_size=(96, 96), seed=1)
    assert (tmp_path / "b/annotations/instances_train.json").read_bytes() != (
        tiny_set / "annotations/instances_train.json"
    ).read_bytes()


def test_skips_a_complete_set_and_regenerates_on_new_params(
    shapes: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shapes.generate_shapes_dataset(tmp_path, num_train=4, num_val=1, image_size=(64, 64))
    with monkeypatch.context() as m:
        m.setattr(shapes, "_write_split", lambda *a, **k: pytest.fail("a complete set was regenerated"))
        shapes.generate_shapes_dataset(tmp_path, num_train=4, num_val=1, image_size=(64, 64))
    shapes.generate_shapes_dataset(tmp_path, num_train=2, num_val=1, image_size=(64, 64))
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["000001.jpg", "000002.jpg"]
    assert len(_load(tmp_path / "annotations/instances_train.json")["images"]) == 2


def test_empty_sets(shapes: ModuleType, tmp_path: Path) -> None:
    ann_files = shapes.generate_shapes_dataset(tmp_path / "none", num_train=0, num_val=0, image_size=(64, 64))
    assert _load(ann_files["train"])["images"] == [] and _load(ann_files["val"])["annotations"] == []
    ann_files = shapes.generate_shapes_dataset(
        tmp_path / "blank", num_train=3, num_val=0, image_size=(64, 64), empty_fraction=1.0
    )
    data = _load(ann_files["train"])
    assert len(data["images"]) == 3 and data["annotations"] == []


def test_loads_in_coco_detection(tiny_set: Path, shapes: ModuleType) -> None:
    ds = CocoDetection(tiny_set / "annotations/instances_val.json", tiny_set / "val")
    assert ds.class_names == list(shapes.CLASS_NAMES)
    assert ds.label_to_category_id == list(range(1, len(shapes.CLASS_NAMES) + 1))
    data = _load(tiny_set / "annotations/instances_val.json")
    for index, image_id in enumerate(ds.image_ids):
        raw = ds.load_raw(index)
        anns = [a for a in data["annotations"] if a["image_id"] == image_id]
        expected = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]).reshape(-1, 4)
        np.testing.assert_array_equal(raw["boxes"], expected.astype(np.float32))
        np.testing.assert_array_equal(raw["labels"], [a["category_id"] - 1 for a in anns])


def test_cli(shapes: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    argv = ["--out", str(out), "--num-train", "2", "--num-val", "1", "--size", "64", "--format", "png"]
    assert shapes.main(argv) == 0
    assert sorted(p.name for p in (out / "train").iterdir()) == ["000001.png", "000002.png"]
    assert _load(out / shapes.MARKER_NAME)["image_size"] == [64, 64]


def test_bad_arguments(shapes: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="image_format must be 'jpg' or 'png'"):
        shapes.generate_shapes_dataset(tmp_path, num_train=1, num_val=0, image_format="bmp")
    with pytest.raises(ValueError, match="image_size must be"):
        shapes.generate_shapes_dataset(tmp_path, num_train=1, num_val=0, image_size=(8, 8))
