"""datasets/subset_coco.py: a seeded random subset of a COCO file keeps exactly its images' annotations."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.conftest import load_script

subset_coco = load_script("datasets/subset_coco.py")

COCO = {
    "info": {"description": "hand-made"},
    "images": [{"id": i, "file_name": f"{i:03d}.jpg", "height": 8, "width": 8} for i in (10, 20, 30, 40, 50)],
    "annotations": [{"id": 1, "image_id": 10, "category_id": 1, "bbox": [0, 0, 2, 2]},
                    {"id": 2, "image_id": 30, "category_id": 2, "bbox": [1, 1, 2, 2]},
                    {"id": 3, "image_id": 30, "category_id": 1, "bbox": [2, 2, 2, 2]},
                    {"id": 4, "image_id": 50, "category_id": 1, "bbox": [3, 3, 2, 2]}],
    "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
}


def test_subset_keeps_the_drawn_images_and_their_annotations() -> None:
    drawn = sorted(random.Random(7).sample(range(5), 3))  # the documented draw
    result = subset_coco.subset(COCO, 3, seed=7)
    assert [image["id"] for image in result["images"]] == [COCO["images"][i]["id"] for i in drawn]
    ids = {image["id"] for image in result["images"]}
    assert result["annotations"] == [a for a in COCO["annotations"] if a["image_id"] in ids]
    assert result["categories"] == COCO["categories"] and result["info"] == COCO["info"]
    assert subset_coco.subset(COCO, 3, seed=7) == result  # same seed, same subset
    assert subset_coco.subset(COCO, 5, seed=0)["annotations"] == COCO["annotations"]


def test_cli_writes_and_never_replaces_unasked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source, out = tmp_path / "full.json", tmp_path / "sub.json"
    source.write_text(json.dumps(COCO))
    assert subset_coco.main(["--ann", str(source), "--num-images", "2", "--out", str(out)]) == 0
    assert len(json.loads(out.read_text())["images"]) == 2
    written = out.read_text()
    assert subset_coco.main(["--ann", str(source), "--num-images", "3", "--out", str(out)]) == 1
    assert "sub.json exists; choose another --out or add --overwrite" in caplog.text
    assert out.read_text() == written
    assert subset_coco.main(["--ann", str(source), "--num-images", "3", "--out", str(out), "--overwrite"]) == 0
    assert len(json.loads(out.read_text())["images"]) == 3


@pytest.mark.parametrize(("content", "num", "message"), [
    (COCO, 6, "--num-images must be in [1, 5] (the images of the file), got 6"),
    (COCO, 0, "--num-images must be in [1, 5]"),
    ({"images": []}, 1, "not a COCO instances file: 'annotations' must be a list"),
    ([1, 2], 1, "expected a JSON object"),
])  # fmt: skip
def test_bad_input_is_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture, content: object, num: int,
                               message: str) -> None:
    source = tmp_path / "full.json"
    source.write_text(json.dumps(content))
    assert subset_coco.main(["--ann", str(source), "--num-images", str(num), "--out", str(tmp_path / "o.json")]) == 1
    assert message in caplog.text and not (tmp_path / "o.json").exists()
    assert subset_coco.main(["--ann", str(tmp_path / "nope.json"), "--num-images", "1",
                             "--out", str(tmp_path / "o.json")]) == 1
    assert "nope.json does not exist" in caplog.text
