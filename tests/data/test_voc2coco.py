"""Tests for datasets/voc2coco.py: hand-computed COCO records and the VOC -> COCO -> CocoDetection round trip."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest

from centernet.data.coco import CocoDetection
from centernet.data.voc import VOC_CLASSES, VOCDetection
from tests.conftest import load_script
from tests.data.test_voc import write_devkit

CAT_ID, DOG_ID, PERSON_ID = (VOC_CLASSES.index(n) + 1 for n in ("cat", "dog", "person"))


@pytest.fixture(scope="module")
def voc2coco() -> ModuleType:
    return load_script("datasets/voc2coco.py")


@pytest.fixture
def devkit(tmp_path: Path) -> Path:
    return write_devkit(tmp_path / "VOCdevkit")


def test_convert_hand_computed(voc2coco: ModuleType, devkit: Path) -> None:
    data = voc2coco.convert(devkit / "VOC2007", "trainval")
    assert data["images"] == [
        {"id": 1, "file_name": "JPEGImages/000001.jpg", "width": 30, "height": 20},
        {"id": 2, "file_name": "JPEGImages/000002.jpg", "width": 16, "height": 12},
    ]
    # VOC (xmin, ymin, xmax, ymax) 1-based -> [xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1].
    assert data["annotations"] == [
        {"id": 1, "image_id": 1, "category_id": CAT_ID, "bbox": [1, 2, 10, 6], "area": 60, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": DOG_ID, "bbox": [4, 4, 16, 15], "area": 240, "iscrowd": 1},
        {"id": 3, "image_id": 1, "category_id": PERSON_ID, "bbox": [29, 0, 1, 20], "area": 20, "iscrowd": 0},
    ]
    assert [c["id"] for c in data["categories"]] == list(range(1, 21))
    assert [c["name"] for c in data["categories"]] == list(VOC_CLASSES)


def test_convert_empty_split_and_classes(voc2coco: ModuleType, devkit: Path) -> None:
    empty = voc2coco.convert(devkit / "VOC2007", "test")
    assert empty["images"] == [] and empty["annotations"] == [] and len(empty["categories"]) == 20
    data = voc2coco.convert(devkit / "VOC2007", "trainval", classes=["dog"])
    assert data["categories"] == [{"id": 1, "name": "dog", "supercategory": "none"}]
    assert [(a["id"], a["category_id"], a["iscrowd"]) for a in data["annotations"]] == [(1, 1, 1)]


def test_round_trip_matches_voc_dataset(voc2coco: ModuleType, devkit: Path, tmp_path: Path) -> None:
    out = tmp_path / "ann" / "voc0712_trainval.json"
    argv = ["--root", str(devkit), "--split", "trainval", "--years", "2007", "2012", "--out", str(out)]
    assert voc2coco.main(argv) == 0
    coco_ds = CocoDetection(out, devkit)
    voc_ds = VOCDetection(devkit, "trainval", years=["2007", "2012"])
    assert coco_ds.image_ids == voc_ds.image_ids == [1, 2, 3]
    assert coco_ds.class_names == voc_ds.class_names
    assert coco_ds.label_to_category_id == voc_ds.label_to_category_id
    for index in range(len(voc_ds)):
        coco_raw, voc_raw = coco_ds.load_raw(index), voc_ds.load_raw(index)
        for key in ("boxes", "labels", "ignore", "image"):
            np.testing.assert_array_equal(coco_raw[key], voc_raw[key], err_msg=f"{key} of image {index}")
        assert coco_raw["file_name"] == voc_raw["file_name"] and coco_raw["image_id"] == voc_raw["image_id"]


def test_image_root_and_missing_size(voc2coco: ModuleType, devkit: Path) -> None:
    voc07 = devkit / "VOC2007"
    xml = voc07 / "Annotations" / "000002.xml"
    xml.write_text(re.sub(r"<size>.*</size>", "", xml.read_text()))
    data = voc2coco.convert(voc07, "trainval", image_root=voc07 / "JPEGImages")
    assert data["images"][1] == {"id": 2, "file_name": "000002.jpg", "width": 16, "height": 12}  # from the JPEG
    with pytest.raises(ValueError, match="is not under the image root"):
        voc2coco.convert(voc07, "trainval", image_root=devkit / "VOC2012")
    cv2.imwrite(str(voc07 / "JPEGImages" / "000001.jpg"), np.zeros((3, 3, 3), dtype=np.uint8))  # size from XML
    assert voc2coco.convert(voc07, "trainval")["images"][0]["width"] == 30


def test_cli_error_is_one_line(voc2coco: ModuleType, devkit: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.json"
    with pytest.raises(SystemExit) as exc:
        voc2coco.main(["--root", str(devkit), "--split", "val", "--years", "2007", "--out", str(out)])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("voc2coco.py: error: VOC split file not found") and err.count("\n") == 1
    assert not out.exists()
