"""Bad training input never loses work: ``data.on_bad_sample: error`` stops with one line naming the file
and record (an existing checkpoint is kept), ``skip`` skips the sample with a counted warning."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from centernet.config import load_config
from centernet.data.coco import CocoDetection
from centernet.engine.trainer import Trainer
from tests.conftest import load_script

train_tool = load_script("tools/train.py")


def copy_shapes(tiny_shapes: Path, tmp_path: Path) -> Path:
    root = tmp_path / "shapes"
    shutil.copytree(tiny_shapes, root)
    return root


def edit_annotations(root: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    path = root / "annotations" / "instances_train.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))  # NaN is written as the (Python-readable) literal NaN
    return path


def first_annotation_of(data: dict[str, Any], image_id: int) -> dict[str, Any]:
    return next(a for a in data["annotations"] if a["image_id"] == image_id)


def set_bbox(image_id: int, bbox: list[float]) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        first_annotation_of(data, image_id)["bbox"] = bbox

    return edit


def set_category(image_id: int, category_id: int) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        first_annotation_of(data, image_id)["category_id"] = category_id

    return edit


def train_cli(config: Path, work_dir: Path, capsys: pytest.CaptureFixture[str], *overrides: str) -> str:
    """Run tools/train.py expecting exit code 1; return its one ERROR line."""
    code = train_tool.main(["--config", str(config), "--work-dir", str(work_dir), "--no-progress", *overrides])
    assert code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]
    assert len(errors) == 1, errors
    return errors[0]


def data_overrides(root: Path) -> list[str]:
    return [f"data.train.ann_file={root}/annotations/instances_train.json", f"data.train.img_dir={root}/train"]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (set_bbox(3, [10.0, float("nan"), 5.0, 5.0]), "has a non-finite bbox [10.0, nan, 5.0, 5.0]"),
        (set_bbox(3, [10.0, 10.0, -4.0, 5.0]), "has a negative width or height: bbox [10.0, 10.0, -4.0, 5.0]"),
        (set_bbox(3, [70.0, 10.0, 5.0, 5.0]), "has bbox [70.0, 10.0, 5.0, 5.0] entirely outside the 64x64 image"),
        (set_category(3, 99), "has unknown category id 99; known: [1, 2, 3, 4, 5]"),
    ],
    ids=["nan_box", "negative_size", "outside_image", "unknown_category"],
)
def test_bad_annotation_stops_with_one_line_naming_file_and_record(
    edit: Callable[[dict[str, Any]], None],
    expected: str,
    tiny_config: Callable[..., Path],
    tiny_shapes: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = copy_shapes(tiny_shapes, tmp_path)
    ann_file = edit_annotations(root, edit)
    annotation_id = first_annotation_of(json.loads(ann_file.read_text()), 3)["id"]
    line = train_cli(tiny_config(), tmp_path / "work", capsys, *data_overrides(root))
    assert f"{ann_file}: annotation id {annotation_id} (image id 3, 000003.jpg) {expected}" in line


def test_degenerate_boxes_are_dropped_and_partial_ones_kept(tiny_shapes: Path, tmp_path: Path) -> None:
    root = copy_shapes(tiny_shapes, tmp_path)

    def edit(data: dict[str, Any]) -> None:
        anns = [a for a in data["annotations"] if a["image_id"] == 3]
        anns[0]["bbox"] = [10.0, 10.0, 0.0, 5.0]  # zero width: dropped as the original does
        anns[1]["bbox"] = [60.0, 60.0, 20.0, 20.0]  # partly outside: kept (clipped by the transform)

    ann_file = edit_annotations(root, edit)
    dataset = CocoDetection(ann_file, root / "train")
    raw = dataset.load_raw(dataset.image_ids.index(3))
    count = sum(1 for a in json.loads(ann_file.read_text())["annotations"] if a["image_id"] == 3)
    assert len(raw["boxes"]) == count - 1 and [60.0, 60.0, 80.0, 80.0] in raw["boxes"].tolist()
    assert dataset.bad_samples == []


def test_unreadable_image_stops_cleanly_and_keeps_the_checkpoint(
    tiny_config: Callable[..., Path], tiny_shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = copy_shapes(tiny_shapes, tmp_path)
    config, work_dir = tiny_config(), tmp_path / "work"
    assert train_tool.main(["--config", str(config), "--work-dir", str(work_dir), "--no-progress",
                            *data_overrides(root), "solver.epochs=1"]) == 0
    checkpoint = work_dir / "checkpoints" / "last.pth"
    saved = checkpoint.read_bytes()
    (root / "train" / "000005.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    capsys.readouterr()
    line = train_cli(config, work_dir, capsys, *data_overrides(root), "--resume")
    assert f"could not decode image file {root / 'train' / '000005.jpg'} (image id 5)" in line
    assert checkpoint.read_bytes() == saved


def test_empty_dataset_is_an_error_naming_the_file(
    tiny_config: Callable[..., Path], tiny_shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = copy_shapes(tiny_shapes, tmp_path)

    def empty(data: dict[str, Any]) -> None:
        data["images"], data["annotations"] = [], []

    ann_file = edit_annotations(root, empty)
    line = train_cli(tiny_config(), tmp_path / "work", capsys, *data_overrides(root))
    assert "data.train has no usable images" in line and str(ann_file) in line


def test_skip_mode_trains_past_every_kind_of_bad_sample_and_counts_them(
    tiny_config: Callable[..., Path], tiny_shapes: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = copy_shapes(tiny_shapes, tmp_path)

    def edit(data: dict[str, Any]) -> None:
        set_bbox(3, [1.0, float("nan"), 2.0, 2.0])(data)
        set_category(8, 42)(data)

    edit_annotations(root, edit)
    (root / "train" / "000005.jpg").write_bytes(b"corrupt")
    (root / "train" / "000011.jpg").unlink()
    # 12 - 2 images with bad annotations = 10 images, batch 5: every image is visited in each epoch
    overrides = [*data_overrides(root), "data.on_bad_sample=skip", "data.batch_size=5", "eval.interval=0"]
    trainer = Trainer.from_config(load_config(tiny_config(), overrides), tmp_path / "work", progress=False)
    train_set = trainer.train_loader.dataset
    assert len(train_set) == 10 and 3 not in train_set.image_ids
    with caplog.at_level(logging.WARNING, logger="centernet"):
        trainer.fit()
    assert trainer.iteration == 4 and trainer.skipped_samples == 4  # 2 unreadable images x 2 epochs
    warnings = " ".join(r.getMessage() for r in caplog.records)
    assert "000011.jpg" in warnings and "000005.jpg" in warnings and "unknown category id 42" in warnings
    records = [json.loads(line) for line in (tmp_path / "work" / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped_samples"] for r in records if r["type"] == "train"][-1] == 2 + 4
