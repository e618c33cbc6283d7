"""tools/eval.py --predictions on files written elsewhere: demo output (file_name), VOC ids, no image files."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import load_script
from tests.data.test_voc import IMAGES_2007, write_year
from tests.inference.test_predictor import tiny_config as predictor_config
from tests.inference.test_predictor import write_checkpoint

demo_tool = load_script("tools/demo.py")
eval_tool = load_script("tools/eval.py")


def error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]


def test_the_demo_output_of_the_val_images_can_be_scored(
    tiny_config: Callable[..., Path], tiny_shapes: Path, tmp_path: Path
) -> None:
    checkpoint = write_checkpoint(tmp_path / "tiny.pth", predictor_config())
    demo_out = tmp_path / "demo"
    assert demo_tool.main(["--checkpoint", str(checkpoint), "--input", str(tiny_shapes / "val"), "--output",
                           str(demo_out), "--device", "cpu", "--no-progress", "--score-thr", "0"]) == 0
    assert all("image_id" not in record for record in json.loads((demo_out / "detections.json").read_text()))
    assert eval_tool.main(["--config", str(tiny_config()), "--predictions", str(demo_out / "detections.json")]) == 0
    metrics = json.loads((demo_out / "eval_detections" / "metrics.json").read_text())
    assert metrics["metric"] == "coco" and 0.0 <= metrics["AP"] <= 1.0
    assert metrics["predictions"] == str(demo_out / "detections.json")
    scored = json.loads((demo_out / "eval_detections" / "detections.json").read_text())
    assert len({record["image_id"] for record in scored}) == 4  # the 4 val images, matched by file name


def test_scoring_needs_the_annotations_only(
    tiny_config: Callable[..., Path], tiny_shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    annotations = tmp_path / "instances_val.json"
    shutil.copyfile(tiny_shapes / "annotations" / "instances_val.json", annotations)
    ground_truth = json.loads(annotations.read_text())
    first = ground_truth["annotations"][0]
    image = next(i for i in ground_truth["images"] if i["id"] == first["image_id"])
    detections = tmp_path / "dets.json"
    detections.write_text(json.dumps([{"file_name": image["file_name"], "category_id": first["category_id"],
                                       "bbox": first["bbox"], "score": 0.9}]))
    overrides = [f"data.val.ann_file={annotations}", f"data.val.img_dir={tmp_path / 'no_images'}"]
    out = tmp_path / "scored"
    assert eval_tool.main(["--config", str(tiny_config()), "--predictions", str(detections), "--out-dir", str(out),
                           *overrides]) == 0
    assert json.loads((out / "metrics.json").read_text())["AP"] > 0
    assert not (out / "predictions.png").exists()
    assert "no predictions.png: image file not found" in capsys.readouterr().err


@pytest.fixture
def voc_val(tiny_config: Callable[..., Path], tmp_path: Path) -> list[str]:
    """``--config`` and the overrides of a VOC val set (images 000001 and 000002, VOC07 AP)."""
    root = tmp_path / "VOC2007"
    write_year(root, IMAGES_2007, {"test": list(IMAGES_2007)})
    return ["--config", str(tiny_config()), f"data.val={{type: voc, root: {root}, split: test}}", "eval.metric=voc07"]


def test_voc_results_with_string_ids_are_matched(voc_val: list[str], tmp_path: Path) -> None:
    detections = tmp_path / "results.json"  # the cat of 000001 (VOC pixels 2,3-11,8 -> 0-based x 1..11, y 2..8)
    detections.write_text(json.dumps([{"image_id": "000001", "category_name": "cat", "bbox": [1, 2, 10, 6],
                                       "score": 0.9}]))
    out = tmp_path / "scored"
    assert eval_tool.main([*voc_val, "--predictions", str(detections), "--out-dir", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["per_class"]["cat"] == pytest.approx(1.0)


def test_an_unknown_image_says_what_is_accepted(voc_val: list[str], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    detections = tmp_path / "results.json"
    detections.write_text(json.dumps([{"image_id": "000009", "category_id": 8, "bbox": [1, 2, 10, 6], "score": 0.9}]))
    assert eval_tool.main([*voc_val, "--predictions", str(detections), "--out-dir", str(tmp_path / "o")]) == 1
    (line,) = error_lines(capsys)
    assert f"{detections}: detection record 0: image '000009' is not an image of the val set" in line
    assert "1..2 in split order" in line and "'000001'" in line
    assert not (tmp_path / "o").exists()
