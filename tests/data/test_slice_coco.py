"""Tests for datasets/slice_coco.py: hand-computed tiles and boxes, round trip, pixels, empty tiles, errors."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np
import pytest

from centernet.data.coco import CocoDetection
from tests.conftest import load_script

TILE, OVERLAP = 16, 4  # stride 12: a 30 px side gets tiles at 0, 12 and 14 (the last ends at 30); 20 px: 0, 4


@pytest.fixture(scope="module")
def slicer() -> ModuleType:
    return load_script("datasets/slice_coco.py")


def pixels(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_set(root: Path, images: list[tuple[str, np.ndarray]], annotations: list[dict[str, Any]]) -> Path:
    """Write ``images`` (file name, pixels) under ``root/img`` and their COCO file ``root/in.json``."""
    entries = []
    for image_id, (file_name, image) in enumerate(images, start=1):
        (root / "img" / file_name).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / "img" / file_name), image)
        entries.append({"id": image_id, "file_name": file_name, "height": image.shape[0], "width": image.shape[1]})
    categories = [{"id": 1, "name": "car", "supercategory": "vehicle"}, {"id": 7, "name": "bus"}]
    ann_file = root / "in.json"
    ann_file.write_text(json.dumps({"images": entries, "annotations": annotations, "categories": categories}))
    return ann_file


@pytest.fixture
def hand_set(tmp_path: Path) -> Path:
    """A 30x20 (w x h) image ``scenes/big.png`` with boxes A, B, C, and a 12x10 image ``small.png`` without any."""
    annotations = [
        {"id": 10, "image_id": 1, "category_id": 1, "bbox": [2, 2, 6, 6], "area": 1.0,  # A: xyxy 2,2,8,8
         "segmentation": [[2, 2, 8, 2, 8, 8]]},
        {"id": 11, "image_id": 1, "category_id": 7, "bbox": [20, 1, 9, 3], "iscrowd": 1},  # B: 20,1,29,4 (27)
        {"id": 12, "image_id": 1, "category_id": 1, "bbox": [10.5, 14, 4, 6], "iscrowd": 0},  # C: 10.5,14,14.5,20
    ]
    return write_set(tmp_path, [("scenes/big.png", pixels(20, 30)), ("small.png", pixels(10, 12, 1))], annotations)


def load(out: Path) -> dict[str, Any]:
    return json.loads((out / "annotations.json").read_text())


def boxes_by_tile(coco: dict[str, Any]) -> dict[str, list[tuple[int, list[float], float, int]]]:
    """``{file_name: [(category_id, bbox, area, iscrowd), ...]}``."""
    names = {image["id"]: image["file_name"] for image in coco["images"]}
    result: dict[str, list] = {name: [] for name in names.values()}
    for a in coco["annotations"]:
        result[names[a["image_id"]]].append((a["category_id"], a["bbox"], a["area"], a["iscrowd"]))
    return result


def test_hand_computed_tiles_and_boxes(slicer: ModuleType, hand_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    counts = slicer.slice_coco(hand_set, tmp_path / "img", out, tile_size=TILE, overlap=OVERLAP, progress=False)
    coco = load(out)
    # big: tiles (x0, y0) row by row (0,0) (12,0) (14,0) (0,4) (12,4) (14,4), all 16x16; small: one 12x10 tile
    grid = [(0, 0), (12, 0), (14, 0), (0, 4), (12, 4), (14, 4)]
    assert [image["file_name"] for image in coco["images"]] == [
        *(f"images/big_x{x}_y{y}.png" for x, y in grid), "images/small_x0_y0.png"]
    assert [image["offset"] for image in coco["images"]] == [*([x, y] for x, y in grid), [0, 0]]
    assert [image["id"] for image in coco["images"]] == list(range(1, 8))
    assert [image["source_image_id"] for image in coco["images"]] == [1] * 6 + [2]
    assert [image["source_file_name"] for image in coco["images"]] == ["scenes/big.png"] * 6 + ["small.png"]
    assert [(image["width"], image["height"]) for image in coco["images"]] == [(16, 16)] * 6 + [(12, 10)]
    assert all((out / image["file_name"]).is_file() for image in coco["images"])
    assert boxes_by_tile(coco) == {
        # A whole; B starts at x 20 - 0 = 20 > 16 (nothing inside); C rows 14-16 hold 2/6 < 0.5
        "images/big_x0_y0.png": [(1, [2.0, 2.0, 6.0, 6.0], 36.0, 0)],
        # A ends at x 8 < 12; B x 8-17 clipped to 8-16: 8x3 = 24 of 27 kept (iscrowd kept); C 2/6 as above
        "images/big_x12_y0.png": [(7, [8.0, 1.0, 8.0, 3.0], 24.0, 1)],
        "images/big_x14_y0.png": [(7, [6.0, 1.0, 9.0, 3.0], 27.0, 1)],  # B x 6-15 whole
        # A y -2..4 clipped to 0..4: 6x4 = 24 of 36 (0.67); B ends at y 4 - 4 = 0; C whole at y 10..16
        "images/big_x0_y4.png": [(1, [2.0, 0.0, 6.0, 4.0], 24.0, 0), (1, [10.5, 10.0, 4.0, 6.0], 24.0, 0)],
        "images/big_x12_y4.png": [(1, [0.0, 10.0, 2.5, 6.0], 15.0, 0)],  # C x -1.5..2.5 clipped: 15 of 24
        "images/big_x14_y4.png": [],  # C x -3.5..0.5 clipped: 3 of 24 (0.125), dropped
        "images/small_x0_y0.png": [],
    }
    assert [a["id"] for a in coco["annotations"]] == list(range(1, 7))
    assert not any("segmentation" in a for a in coco["annotations"])
    assert coco["categories"] == json.loads(hand_set.read_text())["categories"]
    assert coco["slicing"] == {"tile_size": TILE, "overlap": OVERLAP, "min_visible": 0.5, "empty_share": 1.0,
                               "seed": 0, "image_format": "png", "source_ann_file": str(hand_set),
                               "source_img_dir": str(tmp_path / "img")}
    assert counts == {"images": 2, "tiles": 7, "empty_tiles_kept": 2, "empty_tiles_dropped": 0, "boxes": 6}
    assert len(CocoDetection(out / "annotations.json", out)) == 7  # loads as a training set

    # min_visible 0.7: A in (0,4) (0.67) and C in (12,4) (0.625) are dropped, which empties (12,4)
    slicer.slice_coco(hand_set, tmp_path / "img", out, tile_size=TILE, overlap=OVERLAP, min_visible=0.7,
                      overwrite=True, progress=False)
    tiles = boxes_by_tile(load(out))
    assert tiles["images/big_x0_y4.png"] == [(1, [10.5, 10.0, 4.0, 6.0], 24.0, 0)]
    assert tiles["images/big_x12_y4.png"] == []


def test_round_trip_and_pixels(slicer: ModuleType, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    height, width = 50, 70
    xy = rng.uniform(0, [width - 2, height - 2], (25, 2)).round(1)
    wh = rng.uniform(1, 18, (25, 2)).round(1).clip(None, [width, height] - xy)
    annotations = [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [*p.tolist(), *s.tolist()]}
                   for i, (p, s) in enumerate(zip(xy, wh))]
    image = pixels(height, width, 2)
    ann_file = write_set(tmp_path, [("a.png", image)], annotations)
    out = tmp_path / "out"
    slicer.slice_coco(ann_file, tmp_path / "img", out, tile_size=20, overlap=6, min_visible=0.3, progress=False)
    coco = load(out)
    originals = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in annotations)])
    by_tile = boxes_by_tile(coco)
    whole = cut = 0
    for entry in coco["images"]:
        x0, y0 = entry["offset"]
        x1, y1 = x0 + entry["width"], y0 + entry["height"]
        tile_pixels = cv2.imread(str(out / entry["file_name"]), cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(tile_pixels, image[y0:y1, x0:x1])  # png is lossless
        shifted = np.array([[x + x0, y + y0, x + w + x0, y + h + y0] for _, (x, y, w, h), _, _ in
                            by_tile[entry["file_name"]]]).reshape(-1, 4)
        clipped = np.concatenate([originals[:, :2].clip([x0, y0], [x1, y1]),
                                  originals[:, 2:].clip([x0, y0], [x1, y1])], axis=1)
        for box in shifted:  # each kept box is some original box clipped to the tile
            assert np.isclose(clipped, box).all(axis=1).any(), (entry["file_name"], box)
            cut += not np.isclose(originals, box).all(axis=1).any()
        inside = (originals[:, :2] >= [x0, y0]).all(axis=1) & (originals[:, 2:] <= [x1, y1]).all(axis=1)
        for box in originals[inside]:  # each original box wholly inside the tile is there unchanged
            assert np.isclose(shifted, box).all(axis=1).any(), (entry["file_name"], box)
            whole += 1
    assert whole > 10 and cut > 10  # both cases are exercised


def test_empty_share(slicer: ModuleType, tmp_path: Path) -> None:
    # 60x60: tiles at 0, 12, 24, 36, 44 on each axis (25); the one box lies in tile (0, 0) only
    annotations = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 3, 3]}]
    ann_file = write_set(tmp_path, [("a.png", pixels(60, 60))], annotations)

    def run(name: str, share: float, seed: int = 0) -> tuple[dict[str, int], list[str]]:
        counts = slicer.slice_coco(ann_file, tmp_path / "img", tmp_path / name, tile_size=TILE, overlap=OVERLAP,
                                   empty_share=share, seed=seed, progress=False)
        names = [image["file_name"] for image in load(tmp_path / name)["images"]]
        assert sorted(p.name for p in (tmp_path / name / "images").iterdir()) == sorted(n[7:] for n in names)
        return counts, names

    counts, names = run("none", 0.0)
    assert names == ["images/a_x0_y0.png"]
    assert counts == {"images": 1, "tiles": 1, "empty_tiles_kept": 0, "empty_tiles_dropped": 24, "boxes": 1}
    counts, names = run("all", 1.0)
    assert len(names) == 25 and counts["empty_tiles_kept"] == 24 and counts["empty_tiles_dropped"] == 0
    counts, half = run("half", 0.5, seed=3)
    assert len(half) == 1 + round(0.5 * 24) and counts["empty_tiles_kept"] == 12
    assert half[0] == "images/a_x0_y0.png" and half == [n for n in names if n in half]  # in grid order
    assert run("half_again", 0.5, seed=3)[1] == half  # the same seed draws the same tiles


def test_existing_output_is_refused_without_overwrite(slicer: ModuleType, hand_set: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    args = ["--ann-file", str(hand_set), "--img-dir", str(tmp_path / "img"), "--out", str(out),
            "--tile-size", str(TILE), "--overlap", str(OVERLAP), "--no-progress"]
    assert slicer.main(args) == 0
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        slicer.main([*args, "--empty-share", "0"])
    assert exit_info.value.code == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("slice_coco.py: error: ") and str(out / "annotations.json") in line
    assert "--overwrite" in line
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()} == before
    assert slicer.main([*args, "--empty-share", "0", "--overwrite"]) == 0
    assert len(load(out)["images"]) == 5 and load(out)["slicing"]["empty_share"] == 0.0  # 2 empty tiles dropped


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"--ann-file": "missing.json"}, ["missing.json", "not found"]),
        ({"remove": "small.png"}, ["small.png", "image id 2", "cannot read"]),
        ({"garble": "scenes/big.png"}, ["big.png", "image id 1", "cannot read"]),
        ({"--tile-size": "0"}, ["tile size", ">= 1", "got 0"]),
        ({"--overlap": "16"}, ["overlap", "[0, tile_size=16)", "got 16"]),
        ({"--overlap": "-1"}, ["overlap", "got -1"]),
        ({"--min-visible": "1.5"}, ["min_visible", "[0, 1]", "1.5"]),
        ({"--empty-share": "-0.1"}, ["empty_share", "[0, 1]", "-0.1"]),
        ({"bbox": [1, 2, 3]}, ["in.json", "annotation id 11", "4 numbers", "[1, 2, 3]"]),
        ({"bbox": [1, 2, "3", 4]}, ["annotation id 11", "4 numbers"]),
    ],
)
def test_bad_input_is_one_line_error(slicer: ModuleType, hand_set: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str], change: dict, expected: list[str]) -> None:
    options = {"--ann-file": str(hand_set), "--img-dir": str(tmp_path / "img"), "--out": str(tmp_path / "out"),
               "--tile-size": str(TILE), "--overlap": str(OVERLAP)}
    if "remove" in change:
        (tmp_path / "img" / change["remove"]).unlink()
    elif "garble" in change:
        (tmp_path / "img" / change["garble"]).write_bytes(b"not an image")
    elif "bbox" in change:
        coco = json.loads(hand_set.read_text())
        coco["annotations"][1]["bbox"] = change["bbox"]
        hand_set.write_text(json.dumps(coco))
    else:
        options.update({k: str(tmp_path / v) if k == "--ann-file" else v for k, v in change.items()})
    with pytest.raises(SystemExit) as exit_info:
        slicer.main([*(item for pair in options.items() for item in pair), "--no-progress"])
    assert exit_info.value.code == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("slice_coco.py: error: ")
    for text in expected:
        assert text in line
    assert not (tmp_path / "out" / "annotations.json").exists()
