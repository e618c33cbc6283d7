"""Tests for centernet.evaluation.io: atomic metrics/detections files and detection loading."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from centernet.evaluation import io as eval_io
from centernet.evaluation import load_detections, write_eval_outputs

METRICS = {"metric": "coco", "AP": 0.25, "AP50": 0.5, "AP75": 0.125, "APs": None, "APm": 0.0, "APl": 1.0,
           "AR1": 0.1, "AR10": 0.2, "AR100": 0.3, "per_class": {"cat": 0.5, "dog": None}}
DETECTIONS = [
    {"image_id": 1, "file_name": "img1.jpg", "category_id": 3, "category_name": "cat",
     "bbox": [10.0, 20.5, 30.25, 40.0], "score": 0.9},
    {"image_id": 5, "file_name": "img5.jpg", "category_id": 7, "category_name": "dog",
     "bbox": [0, 0, 5, 5], "score": 0.125},
]


def test_round_trip(tmp_path: Path) -> None:
    out_dir = tmp_path / "work" / "eval"  # created with parents
    write_eval_outputs(out_dir, METRICS, DETECTIONS)
    assert sorted(p.name for p in out_dir.iterdir()) == ["detections.json", "metrics.json"]  # no temp files
    assert json.loads((out_dir / "metrics.json").read_text()) == METRICS
    assert load_detections(out_dir / "detections.json") == DETECTIONS
    assert load_detections(str(out_dir / "detections.json")) == DETECTIONS


def test_empty_detections_round_trip(tmp_path: Path) -> None:
    write_eval_outputs(tmp_path, {"metric": "coco", "per_class": {}}, [])
    assert load_detections(tmp_path / "detections.json") == []
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"metric": "coco", "per_class": {}}


def test_nan_and_numpy_values_become_valid_json(tmp_path: Path) -> None:
    per_class = {"a": float("nan"), "b": np.float64(0.25)}
    metrics = {"metric": "voc", "mAP": np.float32(0.5), "per_class": per_class}
    dets = [dict(DETECTIONS[0], image_id=np.int64(1), score=np.float32(0.5))]
    write_eval_outputs(tmp_path, metrics, dets)
    text = (tmp_path / "metrics.json").read_text()
    assert "NaN" not in text
    assert json.loads(text) == {"metric": "voc", "mAP": 0.5, "per_class": {"a": None, "b": 0.25}}
    loaded = load_detections(tmp_path / "detections.json")
    assert loaded[0]["image_id"] == 1 and type(loaded[0]["image_id"]) is int
    assert loaded[0]["score"] == 0.5


def test_overwrite_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_eval_outputs(tmp_path, METRICS, DETECTIONS)
    before = (tmp_path / "metrics.json").read_text()

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(eval_io.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_eval_outputs(tmp_path, dict(METRICS, AP=0.75), DETECTIONS)
    assert (tmp_path / "metrics.json").read_text() == before  # old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["detections.json", "metrics.json"]  # temp removed


def test_invalid_detections_are_not_written(tmp_path: Path) -> None:
    bad = [DETECTIONS[0], dict(DETECTIONS[1], score=math.nan)]
    with pytest.raises(ValueError, match=r"detection record 1: 'score' must be a finite number"):
        write_eval_outputs(tmp_path / "out", METRICS, bad)
    assert not (tmp_path / "out").exists()


def test_corrupt_json_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "detections.json"
    path.write_text('[{"image_id": 1,')
    with pytest.raises(ValueError, match="not valid JSON") as info:
        load_detections(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message and "line 1" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"image_id": 1}, r"expected a JSON list of detection records, got dict"),
        ([DETECTIONS[0], 7], r"detection record 1: expected an object"),
        ([{"image_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}],
         r"record 0: missing key\(s\) \['category_id'\]"),
        ([DETECTIONS[0], dict(DETECTIONS[1], bbox=[0, 0, 1])], r"record 1: 'bbox' must be 4 finite numbers"),
        ([dict(DETECTIONS[0], bbox=[0, 0, "1", 1])], r"record 0: 'bbox' must be 4 finite numbers"),
        ([dict(DETECTIONS[0], bbox="0011")], r"record 0: 'bbox' must be 4 finite numbers"),
        ([dict(DETECTIONS[0], image_id="1")], r"record 0: 'image_id' must be an integer"),
        ([dict(DETECTIONS[0], category_id=True)], r"record 0: 'category_id' must be an integer"),
        ([dict(DETECTIONS[0], score=None)], r"record 0: 'score' must be a finite number"),
    ],
)
def test_wrong_structure_errors_name_file_and_index(tmp_path: Path, content: object, expected: str) -> None:
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=expected) as info:
        load_detections(path)
    assert str(info.value).startswith(f"{path}: ")


def test_binary_file_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "dets.json"
    path.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ValueError, match="not UTF-8") as info:
        load_detections(path)
    assert str(info.value).startswith(str(path))


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_detections(tmp_path / "nope.json")


def test_atomic_write_text_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    eval_io.atomic_write_text(target, "[]\n")
    assert target.read_text() == "[]\n"
    assert os.listdir(tmp_path) == ["x.json"]
