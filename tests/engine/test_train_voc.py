"""A VOC-format copy of the tiny shapes set: same boxes as the COCO loader, VOC metrics end to end."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from centernet.config import load_config
from centernet.data.build import build_dataset
from centernet.engine.trainer import Trainer
from centernet.inference.evaluator import score_detections


def coco_to_voc_tree(coco_root: Path, split: str, voc_root: Path) -> list[str]:
    """Write ``voc_root`` (JPEGImages, Annotations with 1-based inclusive boxes, ImageSets/Main/<split>.txt)."""
    data = json.loads((coco_root / "annotations" / f"instances_{split}.json").read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc_root / sub).mkdir(parents=True, exist_ok=True)
    stems = []
    for image in data["images"]:
        stem = Path(image["file_name"]).stem
        stems.append(stem)
        shutil.copy(coco_root / split / image["file_name"], voc_root / "JPEGImages" / f"{stem}.jpg")
        objects = []
        for ann in (a for a in data["annotations"] if a["image_id"] == image["id"]):
            x, y, w, h = ann["bbox"]
            box = f"<xmin>{x + 1:g}</xmin><ymin>{y + 1:g}</ymin><xmax>{x + w:g}</xmax><ymax>{y + h:g}</ymax>"
            objects.append(
                f"<object><name>{names[ann['category_id']]}</name><difficult>0</difficult>"
                f"<bndbox>{box}</bndbox></object>"
            )
        size = f"<size><width>{image['width']}</width><height>{image['height']}</height><depth>3</depth></size>"
        xml = f"<annotation><filename>{stem}.jpg</filename>{size}{''.join(objects)}</annotation>"
        (voc_root / "Annotations" / f"{stem}.xml").write_text(xml)
    split_file = voc_root / "ImageSets" / "Main" / f"{split}.txt"
    with split_file.open("a") as handle:
        handle.write("".join(f"{s}\n" for s in stems))
    return stems


@pytest.fixture
def voc_config(tiny_shapes: Path, tiny_config: Callable[..., Path], tmp_path: Path) -> Path:
    voc_root = tmp_path / "VOC2007"
    coco_to_voc_tree(tiny_shapes, "train", voc_root)
    coco_to_voc_tree(tiny_shapes, "val", voc_root)
    classes = [
        c["name"] for c in json.loads((tiny_shapes / "annotations" / "instances_val.json").read_text())["categories"]
    ]
    extra = (
        f"data:\n  train: {{type: voc, root: {voc_root}, split: train}}\n"
        f"  val: {{type: voc, root: {voc_root}, split: val}}\n  classes: {classes}\n"
        "eval: {metric: voc07}\n"
    )
    return tiny_config(extra, name="voc.yaml")


def test_voc_and_coco_loaders_give_the_same_boxes(voc_config: Path, tiny_config: Callable[..., Path]) -> None:
    voc = build_dataset(load_config(voc_config), "val")
    coco = build_dataset(load_config(tiny_config()), "val")
    assert len(voc) == len(coco) and voc.class_names == coco.class_names
    for index in range(len(voc)):
        a, b = voc.load_raw(index), coco.load_raw(index)
        np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1e-6)
        np.testing.assert_array_equal(a["labels"], b["labels"])


@pytest.mark.parametrize("metric", ["voc07", "voc"])
def test_ground_truth_as_detections_scores_one(voc_config: Path, metric: str, tmp_path: Path) -> None:
    dataset = build_dataset(load_config(voc_config), "val")
    records = []
    for index in range(len(dataset)):
        raw = dataset.load_raw(index)
        for (x1, y1, x2, y2), label in zip(raw["boxes"].tolist(), raw["labels"].tolist(), strict=True):
            records.append(
                {
                    "image_id": raw["image_id"],
                    "category_id": dataset.label_to_category_id[label],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": 1.0,
                }
            )
    metrics = score_detections(dataset, records, metric=metric, backend="pycocotools", out_dir=tmp_path / "eval")
    assert metrics["metric"] == metric and metrics["mAP"] == pytest.approx(1.0)
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["mAP"] == pytest.approx(1.0)
    # the COCO metric on a VOC-format set: its ground truth is built in memory
    assert score_detections(dataset, records, metric="coco", backend="pycocotools", out_dir=None)["AP"] == 1.0


def test_coco_metric_of_a_voc_set_equals_that_of_its_coco_copy(voc_config: Path,
                                                               tiny_config: Callable[..., Path]) -> None:
    voc = build_dataset(load_config(voc_config), "val")
    coco = build_dataset(load_config(tiny_config()), "val")
    rng = np.random.default_rng(0)
    records: dict[str, list[dict]] = {"voc": [], "coco": []}
    for index in range(len(voc)):
        raw = voc.load_raw(index)
        for (x1, y1, x2, y2), label in zip(raw["boxes"].tolist(), raw["labels"].tolist(), strict=True):
            box = [x1 + rng.normal(0, 2), y1 + rng.normal(0, 2), x2 - x1, y2 - y1]  # noisy: AP below 1
            score = float(rng.uniform())
            for name, dataset in (("voc", voc), ("coco", coco)):
                records[name].append({"image_id": dataset.image_ids[index], "bbox": box, "score": score,
                                      "category_id": dataset.label_to_category_id[label]})
    scores = {name: score_detections(dataset, records[name], metric="coco", backend="pycocotools", out_dir=None)
              for name, dataset in (("voc", voc), ("coco", coco))}
    assert 0.0 < scores["voc"]["AP"] < 1.0
    for key in ("AP", "AP50", "AP75", "AR100"):
        assert scores["voc"][key] == scores["coco"][key], key


def test_training_on_voc_writes_voc_metrics(voc_config: Path, tmp_path: Path) -> None:
    Trainer.from_config(load_config(voc_config, ["solver.epochs=1"]), tmp_path / "run", progress=False).fit()
    metrics = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert metrics["metric"] == "voc07" and set(metrics) == {"metric", "mAP", "per_class"}
    assert 0.0 <= metrics["mAP"] <= 1.0
    assert (tmp_path / "run" / "checkpoints" / "best.pth").is_file()  # ranked by mAP


def test_a_voc_metric_on_a_coco_set_fails_before_the_first_step(tiny_config: Callable[..., Path],
                                                                 tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"eval\.metric=voc07 needs a VOC-format dataset, but data\.val is COCO"):
        Trainer.from_config(load_config(tiny_config(), ["eval.metric=voc07"]), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained


def test_training_on_voc_with_the_coco_metric(voc_config: Path, tmp_path: Path) -> None:
    Trainer.from_config(load_config(voc_config, ["solver.epochs=1", "eval.metric=coco"]), tmp_path / "run",
                        progress=False).fit()
    metrics = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert metrics["metric"] == "coco" and 0.0 <= metrics["AP"] <= 1.0 and "recall@0.4" in metrics
