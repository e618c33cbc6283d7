"""Tests for datasets/prepare_trees.py: tiling, box clipping, the COCO output, idempotence, real data."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest

from centernet.data import tiling
from centernet.data.coco import CocoDetection
from tests.conftest import load_script
from tests.data.test_voc import voc_xml

HAVE_DEEPFOREST = importlib.util.find_spec("deepforest") is not None
TILE, OVERLAP = 16, 4  # stride 12
FORMAT_2_DIGESTS = {  # sha256 of the annotation files written by format 2 (before the shared tiler)
    "train": "2895a54650da0edd23c09cbdf12bb75a1f1d7ce9ed1fd857c9b824f660f6501d",
    "val": "5a873ff1649fd4b10cbe8a7aabb04994a4ece59c9c2bb1012435592489edb102",
    "val_yell": "eaf57867c333dda71402e8c2787c2dbc249ca4190db8ec49d3194ce79f10f8e3",
}


@pytest.fixture(scope="module")
def trees() -> ModuleType:
    return load_script("datasets/prepare_trees.py")


def write_source(folder: Path, stem: str, height: int, width: int, objects: list) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pixels = (np.arange(height * width * 3).reshape(height, width, 3) % 251).astype(np.uint8)
    assert cv2.imwrite(str(folder / f"{stem}.png"), pixels)
    (folder / f"{stem}.xml").write_text(voc_xml(height, width, objects, filename=f"{stem}.tif"))


@pytest.fixture
def source(trees: ModuleType, tmp_path: Path) -> Path:
    """A deepforest-like folder: crop 1 is 20x30 (h x w) with two trees, crop 2 is 10x10 without any,
    the val images 12x12 with one Tree and 8x8 with an Alive and a Dead tree (VOC 1-based pixels)."""
    folder = tmp_path / "deepforest_data"
    crop1, crop2 = trees.TRAIN_STEMS
    write_source(folder, crop1, 20, 30, [("Tree", 0, 6, 3, 13, 10), ("Tree", 0, 20, 1, 30, 20)])
    write_source(folder, crop2, 10, 10, [])
    val1, val2 = trees.VAL_STEMS
    write_source(folder, val1, 12, 12, [("Tree", 0, 2, 3, 5, 7)])
    write_source(folder, val2, 8, 8, [("Alive", 0, 1, 1, 4, 4), ("Dead", 0, 5, 5, 8, 8)])
    return folder


def test_tile_origins(trees: ModuleType) -> None:
    assert tiling.tile_origins(30, 16, 4) == [0, 12, 14]  # stride 12; the last tile ends at 30
    assert tiling.tile_origins(20, 16, 4) == [0, 4]
    assert tiling.tile_origins(28, 16, 4) == [0, 12]  # 12 + 16 = 28 already ends at the edge
    assert tiling.tile_origins(10, 16, 4) == [0]  # shorter than a tile
    assert tiling.tile_origins(1249, 400, 100) == [0, 300, 600, 849]
    with pytest.raises(ValueError, match="overlap must be in"):
        tiling.tile_origins(30, 16, 16)


def test_clip_boxes_hand_computed(trees: ModuleType) -> None:
    boxes = np.array([[5, 2, 13, 10], [19, 0, 30, 20], [0, 0, 0, 5]], dtype=np.float64)  # the last has no area
    # tile (x0=0, y0=4), 16 x 16: box 0 keeps 8 x 6 = 48 of 64 (0.75); box 1 lies right of x = 16.
    clipped, kept = tiling.clip_boxes_to_tile(boxes, 0, 4, 16, 16, 0.5)
    np.testing.assert_array_equal(kept, [True, False, False])
    np.testing.assert_allclose(clipped, [[5, 0, 13, 6]])
    # tile (12, 0): box 0 keeps 1 x 8 = 8 of 64 (dropped), box 1 keeps 9 x 16 = 144 of 220 (0.65).
    clipped, kept = tiling.clip_boxes_to_tile(boxes, 12, 0, 16, 16, 0.5)
    np.testing.assert_array_equal(kept, [False, True, False])
    np.testing.assert_allclose(clipped, [[7, 0, 16, 16]])
    _, kept = tiling.clip_boxes_to_tile(boxes, 12, 0, 16, 16, 0.7)  # 0.65 < 0.7
    np.testing.assert_array_equal(kept, [False, False, False])
    clipped, kept = tiling.clip_boxes_to_tile(np.zeros((0, 4)), 0, 0, 16, 16, 0.5)
    assert clipped.shape == (0, 4) and kept.shape == (0,)


def test_holdout_columns(trees: ModuleType) -> None:
    assert trees.holdout_columns(1249, 400) == [(0, 416), (416, 833), (833, 1249)]
    assert trees.holdout_columns(2299, 400) == [(0, 383), (383, 766), (766, 1150), (1150, 1533), (1533, 1916),
                                                (1916, 2299)]
    assert trees.holdout_columns(30, 16) == [(0, 15), (15, 30)]
    assert trees.holdout_columns(10, 16) == [(0, 10)]  # narrower than a tile: one


def test_prepare_writes_tiles_and_coco(trees: ModuleType, source: Path, tmp_path: Path) -> None:
    out = tmp_path / "trees"
    params = trees.TileParams(tile_size=TILE, overlap=OVERLAP, min_visible=0.5, holdout_rows=0)
    counts = trees.prepare_trees(out, data_dir=source, params=params)
    # crop 1: x origins [0, 12, 14] x y origins [0, 4] = 6 tiles; crop 2 (10 x 10): one 10 x 10 tile.
    assert counts == {"train_images": 7, "train_boxes": 6, "val_images": 2, "val_boxes": 3,
                      **{f"{split}_{kind}": 0 for split in trees.HOLDOUT_PARTS for kind in ("images", "boxes")}}
    assert not (out / "val_yell").exists() and not (out / "annotations" / "instances_val_yell.json").exists()
    assert not (out / "annotations" / "instances_val_yell_strips.json").exists()
    train = json.loads((out / "annotations" / "instances_train.json").read_text())
    assert train["categories"] == [{"id": 1, "name": "tree", "supercategory": "tree"}]
    crop1 = trees.TRAIN_STEMS[0]
    boxes_by_tile = {img["file_name"]: [] for img in train["images"]}
    names_by_id = {img["id"]: img["file_name"] for img in train["images"]}
    for ann in train["annotations"]:
        boxes_by_tile[names_by_id[ann["image_id"]]].append(ann["bbox"])
    # 0-based boxes [5, 2, 13, 10] and [19, 0, 30, 20] (xyxy), clipped per tile, as COCO [x, y, w, h]
    assert boxes_by_tile == {
        f"train/{crop1}_x0_y0.png": [[5, 2, 8, 8]],
        f"train/{crop1}_x12_y0.png": [[7, 0, 9, 16]],
        f"train/{crop1}_x14_y0.png": [[5, 0, 11, 16]],
        f"train/{crop1}_x0_y4.png": [[5, 0, 8, 6]],
        f"train/{crop1}_x12_y4.png": [[7, 0, 9, 16]],
        f"train/{crop1}_x14_y4.png": [[5, 0, 11, 16]],
        f"train/{trees.TRAIN_STEMS[1]}_x0_y0.png": [],
    }
    assert [a["id"] for a in train["annotations"]] == [1, 2, 3, 4, 5, 6]
    assert all(a["area"] == a["bbox"][2] * a["bbox"][3] and a["iscrowd"] == 0 for a in train["annotations"])
    # the tile pixels are the crop's pixels
    source_pixels = cv2.imread(str(source / f"{crop1}.png"))
    tile = cv2.imread(str(out / f"train/{crop1}_x12_y4.png"))
    np.testing.assert_array_equal(tile, source_pixels[4:20, 12:28])

    val = json.loads((out / "annotations" / "instances_val.json").read_text())
    assert [img["file_name"] for img in val["images"]] == [f"val/{stem}.png" for stem in trees.VAL_STEMS]
    assert [a["bbox"] for a in val["annotations"]] == [[1, 2, 4, 5], [0, 0, 4, 4], [4, 4, 4, 4]]
    assert {a["category_id"] for a in val["annotations"]} == {1}  # Tree, Alive and Dead are all "tree"
    dataset = CocoDetection(out / "annotations" / "instances_val.json", out)  # loads as a training set
    assert dataset.class_names == ["tree"] and len(dataset) == 2


def test_holdout_rows_are_never_trained_on(trees: ModuleType, tmp_path: Path) -> None:
    """Crop 1 (20 x 30) keeps rows 0-13 for training and holds out rows 14-19 as two 15 x 6 tiles."""
    folder = tmp_path / "deepforest_data"
    crop1, crop2 = trees.TRAIN_STEMS
    trees_1 = [("Tree", 0, 6, 3, 13, 10), ("Tree", 0, 20, 1, 30, 20),  # 0-based [5, 2, 13, 10], [19, 0, 30, 20]
               ("Tree", 0, 3, 16, 8, 19), ("Tree", 0, 21, 11, 26, 18)]  # [2, 15, 8, 19] held out; [20, 10, 26, 18]
    write_source(folder, crop1, 20, 30, trees_1)  # the last one straddles row 14: half above, half below
    write_source(folder, crop2, 10, 10, [])
    for stem in trees.VAL_STEMS:
        write_source(folder, stem, 8, 8, [])
    out = tmp_path / "trees"
    params = trees.TileParams(tile_size=TILE, overlap=OVERLAP, min_visible=0.5, holdout_rows=6)
    counts = trees.prepare_trees(out, data_dir=folder, params=params)
    assert (counts["train_images"], counts["train_boxes"], counts["val_yell_images"], counts["val_yell_boxes"]) == (
        4, 5, 3, 2
    )
    train, holdout, select, report = (json.loads((out / "annotations" / f"instances_{s}.json").read_text())
                                      for s in ("train", "val_yell", "val_yell_select", "val_yell_report"))
    assert boxes_by_image(train) == {
        f"train/{crop1}_x0_y0.png": [[5, 2, 8, 8]],  # 16 x 14 tiles: none reaches row 14
        f"train/{crop1}_x12_y0.png": [[7, 0, 9, 14], [8, 10, 6, 4]],  # the big tree (126/220), the upper half
        f"train/{crop1}_x14_y0.png": [[5, 0, 11, 14], [6, 10, 6, 4]],
        f"train/{crop2}_x0_y0.png": [],  # 10 x 4
    }
    assert boxes_by_image(holdout) == {
        f"val_yell/{crop1}_x0_y14.png": [[2, 1, 6, 4]],
        f"val_yell/{crop1}_x15_y14.png": [[5, 0, 6, 4]],  # the lower half; the big tree keeps 66/220 < 0.5
        f"val_yell/{crop2}_x0_y4.png": [],
    }
    for image in train["images"]:  # no training pixel below the hold-out boundary (14 and 4)
        assert image["height"] == (14 if crop1 in image["file_name"] else 4)
    assert [(i["width"], i["height"]) for i in holdout["images"]] == [(15, 6), (15, 6), (10, 6)]
    # split by source crop: the report set is crop 1's tiles, the selection set crop 2's; the same image files
    assert boxes_by_image(report) == {name: boxes for name, boxes in boxes_by_image(holdout).items() if crop1 in name}
    assert boxes_by_image(select) == {f"val_yell/{crop2}_x0_y4.png": []}
    strips = json.loads((out / "annotations" / "instances_val_yell_strips.json").read_text())
    assert boxes_by_image(strips) == {  # the hold-out rows whole: each crown once, clipped by the same rule
        f"val_yell_strips/{crop1}_x0_y14.png": [[2, 1, 6, 4], [20, 0, 6, 4]],
        f"val_yell_strips/{crop2}_x0_y4.png": [],
    }
    assert [(i["width"], i["height"]) for i in strips["images"]] == [(30, 6), (10, 6)]
    source_pixels = cv2.imread(str(folder / f"{crop1}.png"))
    np.testing.assert_array_equal(cv2.imread(str(out / f"val_yell/{crop1}_x15_y14.png")), source_pixels[14:20, 15:30])
    # a rebuild without the hold-out removes its files
    trees.prepare_trees(out, data_dir=folder, params=trees.TileParams(tile_size=TILE, overlap=OVERLAP, holdout_rows=0))
    assert not (out / "val_yell").exists() and not (out / "annotations" / "instances_val_yell.json").exists()
    with pytest.raises(ValueError, match=r"--holdout-rows 10 leaves no training rows in .*crop2 \(10 rows\)"):
        trees.prepare_trees(out, data_dir=folder, params=trees.TileParams(tile_size=TILE, overlap=OVERLAP,
                                                                          holdout_rows=10))


def boxes_by_image(dataset: dict) -> dict[str, list]:
    """COCO ``bbox`` lists per image file name, in annotation order."""
    boxes: dict[str, list] = {image["file_name"]: [] for image in dataset["images"]}
    names = {image["id"]: image["file_name"] for image in dataset["images"]}
    for ann in dataset["annotations"]:
        boxes[names[ann["image_id"]]].append(ann["bbox"])
    return boxes


def test_idempotent_and_force(trees: ModuleType, source: Path, tmp_path: Path) -> None:
    out = tmp_path / "trees"
    params = trees.TileParams(tile_size=TILE, overlap=OVERLAP, holdout_rows=0)
    trees.prepare_trees(out, data_dir=source, params=params)
    ann_file = out / "annotations" / "instances_train.json"
    ann_file.write_text("{}")  # a rebuild would overwrite this
    assert trees.prepare_trees(out, data_dir=source, params=params)["train_images"] == 0  # skipped
    assert ann_file.read_text() == "{}"
    assert trees.prepare_trees(out, data_dir=source, params=params, force=True)["train_images"] == 7
    assert json.loads(ann_file.read_text())["images"]
    other = trees.TileParams(tile_size=TILE, overlap=0, holdout_rows=0)  # changed parameters rebuild without --force
    assert trees.prepare_trees(out, data_dir=source, params=other)["train_images"] == 2 * 2 + 1


def test_missing_deepforest_says_how_to_install(
    trees: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(SystemExit) as exit_info:
        trees.main(["--out", str(tmp_path / "trees")])
    assert exit_info.value.code == 1
    message = capsys.readouterr().err.strip()
    assert "\n" not in message and "pip install --no-deps deepforest==2.1.0" in message


def stem_and_top(file_name: str) -> tuple[str, int]:
    """``("<crop stem>", y0)`` of a tile named ``<split>/<crop stem>_x<x0>_y<y0>.png``."""
    stem, origin = Path(file_name).stem.rsplit("_x", 1)
    return stem, int(origin.split("_y")[1])


@pytest.mark.skipif(not HAVE_DEEPFOREST, reason="deepforest (the tree-crown sample data) is not installed")
def test_real_deepforest_data(trees: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "trees"
    counts = trees.prepare_trees(out)
    # training rows 0-634 of 1249 x 1035 -> 4 x 2 tiles, rows 0-2071 of 2299 x 2472 -> 8 x 7 tiles of 400 px;
    # hold-out: the bottom 400 rows as 3 + 6 tiles
    assert counts == {"train_images": 8 + 56, "train_boxes": 1152, "val_images": 2, "val_boxes": 61 + 37,
                      "val_yell_images": 3 + 6, "val_yell_boxes": 205,
                      "val_yell_strips_images": 2, "val_yell_strips_boxes": 205,
                      "val_yell_select_images": 6, "val_yell_select_boxes": 96,
                      "val_yell_report_images": 3, "val_yell_report_boxes": 109}
    # The same files as the cutter this script had before it used centernet.data.tiling (digests of that
    # version's output): the tiles did not move.
    for split, digest in FORMAT_2_DIGESTS.items():
        assert hashlib.sha256((out / "annotations" / f"instances_{split}.json").read_bytes()).hexdigest() == digest
    data_dir = trees.deepforest_data_dir()
    boundary = {}
    for stem in trees.TRAIN_STEMS:
        height = cv2.imread(str(data_dir / f"{stem}.png")).shape[0]
        boundary[stem] = height - 400
        crowns = trees.parse_voc_xml(data_dir / f"{stem}.xml", dict.fromkeys(trees.SOURCE_LABELS, 0),
                                     drop_unknown=False).boxes
        centres_below = int(((crowns[:, 1] + crowns[:, 3]) / 2 >= boundary[stem]).sum())
        assert centres_below == {trees.TRAIN_STEMS[0]: 109, trees.TRAIN_STEMS[1]: 96}[stem]  # 205 in all
    assert boundary == {trees.TRAIN_STEMS[0]: 635, trees.TRAIN_STEMS[1]: 2072}
    train = json.loads((out / "annotations" / "instances_train.json").read_text())
    for img in train["images"]:
        stem, y0 = stem_and_top(img["file_name"])
        assert (img["width"], img["height"]) == (400, 400)
        assert y0 + img["height"] <= boundary[stem]  # no training pixel in the hold-out rows
    holdout = json.loads((out / "annotations" / "instances_val_yell.json").read_text())
    for img in holdout["images"]:
        stem, y0 = stem_and_top(img["file_name"])
        assert y0 == boundary[stem] and img["height"] == 400 and 383 <= img["width"] <= 417
    boxes = np.array([a["bbox"] for a in train["annotations"]])
    assert (boxes[:, 2:] > 0).all() and (boxes[:, :2] >= 0).all() and (boxes[:, :2] + boxes[:, 2:] <= 400).all()
    val = CocoDetection(out / "annotations" / "instances_val.json", out)
    assert [len(val.load_raw(i)["boxes"]) for i in range(2)] == [61, 37]
    assert len(CocoDetection(out / "annotations" / "instances_val_yell.json", out)) == 9
    strips = CocoDetection(out / "annotations" / "instances_val_yell_strips.json", out)
    assert sorted(strips.load_raw(i)["image"].shape[:2] for i in range(2)) == [(400, 1249), (400, 2299)]
    assert sorted(len(strips.load_raw(i)["boxes"]) for i in range(2)) == [96, 109]
    # the selection and report sets: the two crops' hold-out tiles, no image (and so no crown) in both
    parts = {name: json.loads((out / "annotations" / f"instances_{name}.json").read_text())
             for name in ("val_yell_select", "val_yell_report")}
    files = {name: {img["file_name"] for img in part["images"]} for name, part in parts.items()}
    assert not files["val_yell_select"] & files["val_yell_report"]
    assert files["val_yell_select"] | files["val_yell_report"] == {img["file_name"] for img in holdout["images"]}
    assert all(trees.TRAIN_STEMS[1] in name for name in files["val_yell_select"])
    assert len(CocoDetection(out / "annotations" / "instances_val_yell_report.json", out)) == 3
