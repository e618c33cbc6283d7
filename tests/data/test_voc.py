"""Tests for centernet.data.voc.VOCDetection on a tiny hand-written VOC tree (real JPEGs and XMLs)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from centernet.data.transforms import TransformedSample, ValTransform
from centernet.data.voc import VOC_CLASSES, VOCDetection

CAT, DOG, PERSON, HORSE = (VOC_CLASSES.index(n) for n in ("cat", "dog", "person", "horse"))

# (name, difficult, xmin, ymin, xmax, ymax) in VOC 1-based inclusive pixels.
Obj = tuple[str, int, int, int, int, int]
# VOC2007 "000001": 20x30 (h x w) with a cat, a difficult dog and a 1-px wide person at the right edge;
# "000002": 12x16 without objects. VOC2012 "2012_000001": 8x8 with a horse.
IMAGES_2007: dict[str, tuple[int, int, list[Obj]]] = {
    "000001": (20, 30, [("cat", 0, 2, 3, 11, 8), ("dog", 1, 5, 5, 20, 19), ("person", 0, 30, 1, 30, 20)]),
    "000002": (12, 16, []),
}
IMAGES_2012: dict[str, tuple[int, int, list[Obj]]] = {"2012_000001": (8, 8, [("horse", 0, 1, 1, 8, 8)])}
# The same boxes, 0-based: [xmin - 1, ymin - 1, xmax, ymax].
BOXES_000001 = np.array([[1, 2, 11, 8], [4, 4, 20, 19], [29, 0, 30, 20]], dtype=np.float32)


def voc_xml(height: int, width: int, objects: list[Obj], *, filename: str | None = None, size: bool = True) -> str:
    """A VOC annotation file as the devkit writes it."""
    parts = ["<annotation>", "  <folder>VOC</folder>"]
    if filename is not None:
        parts.append(f"  <filename>{filename}</filename>")
    if size:
        parts.append(f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>")
    for name, difficult, x1, y1, x2, y2 in objects:
        parts += [
            f"  <object><name>{name}</name><pose>Left</pose><truncated>0</truncated><difficult>{difficult}</difficult>",
            f"    <bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>",
        ]
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def write_year(year_dir: Path, images: dict[str, tuple[int, int, list[Obj]]], splits: dict[str, list[str]]) -> None:
    """Write JPEGImages/, Annotations/ and ImageSets/Main/<split>.txt of one VOC20xx folder."""
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (year_dir / sub).mkdir(parents=True, exist_ok=True)
    for index, (name, (h, w, objects)) in enumerate(images.items()):
        pixels = (np.arange(h * w * 3).reshape(h, w, 3) * (index + 3) % 256).astype(np.uint8)
        assert cv2.imwrite(str(year_dir / "JPEGImages" / f"{name}.jpg"), pixels)
        (year_dir / "Annotations" / f"{name}.xml").write_text(voc_xml(h, w, objects, filename=f"{name}.jpg"))
    for split, names in splits.items():
        (year_dir / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))


def write_devkit(root: Path) -> Path:
    """A VOCdevkit with VOC2007 (trainval: 000001, 000002; test: empty) and VOC2012 (trainval)."""
    write_year(root / "VOC2007", IMAGES_2007, {"trainval": list(IMAGES_2007), "test": []})
    write_year(root / "VOC2012", IMAGES_2012, {"trainval": list(IMAGES_2012)})
    return root


@pytest.fixture
def devkit(tmp_path: Path) -> Path:
    return write_devkit(tmp_path / "VOCdevkit")


@pytest.fixture
def voc07(devkit: Path) -> Path:
    return devkit / "VOC2007"


def test_interface_mirrors_coco(voc07: Path) -> None:
    ds = VOCDetection(voc07, "trainval")
    assert ds.class_names == list(VOC_CLASSES) and ds.num_classes == 20
    assert ds.label_to_category_id == list(range(1, 21))
    assert all(ds.category_id_to_label[c] == label for label, c in enumerate(ds.label_to_category_id))
    assert ds.image_ids == [1, 2] and len(ds) == 2
    assert ds.epoch == 0
    assert [r.name for r in ds.records] == ["000001", "000002"]
    # COCO ground truth in memory: image 1's boxes as [x, y, w, h] of the 0-based boxes, difficult = crowd
    annotations = ds.coco.imgToAnns[1]
    np.testing.assert_allclose([a["bbox"] for a in annotations],
                               [[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in BOXES_000001.tolist()])
    assert [a["category_id"] for a in annotations] == [CAT + 1, DOG + 1, PERSON + 1]
    assert [a["iscrowd"] for a in annotations] == ds.load_raw(0)["ignore"].astype(int).tolist()


def test_load_raw_zero_based_boxes_and_difficult(voc07: Path) -> None:
    raw = VOCDetection(voc07, "trainval").load_raw(0)
    assert raw["boxes"].dtype == np.float32
    np.testing.assert_array_equal(raw["boxes"], BOXES_000001)
    assert raw["labels"].dtype == np.int64
    np.testing.assert_array_equal(raw["labels"], [CAT, DOG, PERSON])
    np.testing.assert_array_equal(raw["ignore"], [False, True, False])  # difficult -> ignore region
    assert raw["image_id"] == 1 and raw["file_name"] == "JPEGImages/000001.jpg"
    assert raw["image"].dtype == np.uint8 and raw["image"].shape == (20, 30, 3)
    np.testing.assert_array_equal(raw["image"], cv2.imread(str(voc07 / "JPEGImages" / "000001.jpg")))


def test_negative_image_and_empty_split(voc07: Path) -> None:
    ds = VOCDetection(voc07, "trainval")
    raw = ds.load_raw(-1)
    assert raw["boxes"].shape == (0, 4) and raw["boxes"].dtype == np.float32
    assert raw["labels"].shape == (0,) and raw["labels"].dtype == np.int64
    assert raw["ignore"].shape == (0,) and raw["ignore"].dtype == bool
    assert ds[1]["boxes"].shape == (0, 4)
    empty = VOCDetection(voc07, "test")
    assert len(empty) == 0 and empty.ground_truth_for_eval() == []
    with pytest.raises(IndexError, match="index 0 out of range for 0 images"):
        empty[0]


def test_getitem_meta_and_epoch_seeded_rng(voc07: Path) -> None:
    draws: list[float] = []

    def recording(image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator) -> TransformedSample:
        draws.append(float(rng.random()))
        return ValTransform(input_size=(8, 8), channel_order="bgr")(image, boxes)

    ds = VOCDetection(voc07, "trainval", seed=4)
    sample = ds[0]
    assert sample["image"].dtype == torch.uint8 and sample["image"].shape == (3, 20, 30)
    np.testing.assert_array_equal(sample["boxes"].numpy(), BOXES_000001)
    assert sample["ignore"].tolist() == [False, True, False]
    assert sample["meta"] == {
        "image_id": 1, "file_name": "JPEGImages/000001.jpg", "orig_size": (20, 30), "center": (15.0, 10.0),
        "scale": 30.0, "flipped": False,
    }
    ds = VOCDetection(voc07, "trainval", transform=recording, seed=4)
    ds.set_epoch(2)
    ds[1]
    ds[(5, 0)]
    assert draws == [np.random.default_rng(key).random() for key in ([4, 2, 1], [4, 5, 0])]


def test_ground_truth_for_eval(voc07: Path) -> None:
    gt = VOCDetection(voc07, "trainval").ground_truth_for_eval()
    assert [g["image_id"] for g in gt] == [1, 2]
    assert set(gt[0]) == {"image_id", "boxes", "labels", "difficult"}
    np.testing.assert_array_equal(gt[0]["boxes"], BOXES_000001)
    np.testing.assert_array_equal(gt[0]["labels"], [CAT, DOG, PERSON])
    np.testing.assert_array_equal(gt[0]["difficult"], [False, True, False])
    assert gt[1]["boxes"].shape == (0, 4) and gt[1]["labels"].shape == (0,) and gt[1]["difficult"].shape == (0,)
    inclusive = VOCDetection(voc07, "trainval").ground_truth_for_eval(inclusive=True)
    # VOC (2, 3, 11, 8) covers pixels 2..11 x 3..8 (1-based) = 1..10 x 2..7 (0-based, inclusive).
    np.testing.assert_array_equal(inclusive[0]["boxes"][0], [1, 2, 10, 7])
    np.testing.assert_array_equal(inclusive[0]["boxes"], BOXES_000001 - np.array([0, 0, 1, 1]))
    assert inclusive[0]["boxes"].dtype == np.float32 and inclusive[1]["boxes"].shape == (0, 4)


def test_classes_restrict_and_order(voc07: Path) -> None:
    ds = VOCDetection(voc07, "trainval", classes=["dog", "cat"])
    assert ds.class_names == ["dog", "cat"] and ds.label_to_category_id == [1, 2]
    raw = ds.load_raw(0)  # the person is dropped
    np.testing.assert_array_equal(raw["boxes"], BOXES_000001[:2])
    np.testing.assert_array_equal(raw["labels"], [1, 0])
    np.testing.assert_array_equal(raw["ignore"], [False, True])
    with pytest.raises(ValueError, match=r"classes lists \['cat'\] more than once"):
        VOCDetection(voc07, "trainval", classes=["cat", "cat"])
    with pytest.raises(ValueError, match="classes is empty"):
        VOCDetection(voc07, "trainval", classes=[])


def test_two_years_joined(devkit: Path) -> None:
    ds = VOCDetection(devkit, "trainval", years=["2007", "2012"])
    assert ds.image_ids == [1, 2, 3]
    assert [ds.load_raw(i)["file_name"] for i in range(3)] == [
        "VOC2007/JPEGImages/000001.jpg", "VOC2007/JPEGImages/000002.jpg", "VOC2012/JPEGImages/2012_000001.jpg",
    ]
    raw = ds.load_raw(2)
    np.testing.assert_array_equal(raw["boxes"], [[0, 0, 8, 8]])  # the whole 8x8 image
    np.testing.assert_array_equal(raw["labels"], [HORSE])
    assert raw["image"].shape == (8, 8, 3)
    assert len(VOCDetection(devkit, "trainval", years="VOC2012")) == 1
    with pytest.raises(FileNotFoundError, match=f"VOC year folder not found: {re.escape(str(devkit / 'VOC2010'))}"):
        VOCDetection(devkit, "trainval", years=["2007", "2010"])


def test_missing_split_file_lists_available(voc07: Path) -> None:
    path = voc07 / "ImageSets" / "Main" / "val.txt"
    expected = rf"VOC split file not found: {re.escape(str(path))} \(available splits: \['test', 'trainval'\]\)"
    with pytest.raises(FileNotFoundError, match=expected):
        VOCDetection(voc07, "val")


def test_missing_xml(voc07: Path) -> None:
    xml = voc07 / "Annotations" / "000002.xml"
    xml.unlink()
    with pytest.raises(FileNotFoundError, match=f"VOC annotation file not found: {re.escape(str(xml))}"):
        VOCDetection(voc07, "trainval")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<annotation>\n  <object><name>cat</name>\n</annotation>\n", r"malformed VOC XML {xml}: .*line 3, column"),
        ("<annotations/>\n", r"{xml}: root element is <annotations>, expected <annotation>"),
        (voc_xml(12, 16, [("unicorn", 0, 1, 1, 2, 2)]),
         r"{xml}: object 0 has unknown class 'unicorn'; valid names are \['aeroplane', .*'tvmonitor'\]"),
        (voc_xml(12, 16, [("cat", 0, 1, 1, 2, 2), ("dog", 0, 9, 1, 4, 2)]),
         r"{xml}: object 1 \('dog'\) has an inverted box: xmin 9, ymin 1, xmax 4, ymax 2"),
        (voc_xml(12, 16, [("dog", 0, 1, 5, 4, 2)]), r"{xml}: object 0 \('dog'\) has an inverted box"),
        (voc_xml(12, 16, [("dog", 0, 1, 1, 4, 2)]).replace("<xmax>4", "<xmax>four"),
         r"{xml}: object 0 \('dog'\) <xmax> is 'four', expected a number"),
        (voc_xml(12, 16, [("dog", 0, 1, 1, 4, 2)]).replace("<ymin>1</ymin>", ""),
         r"{xml}: object 0 \('dog'\) has no <ymin>"),
        ("<annotation><object><difficult>0</difficult></object></annotation>", r"{xml}: object 0 has no <name>"),
    ],
    ids=["malformed", "root", "unknown-class", "xmax<xmin", "ymax<ymin", "not-a-number", "no-coord", "no-name"],
)
def test_invalid_xml_errors_name_the_file(voc07: Path, text: str, message: str) -> None:
    xml = voc07 / "Annotations" / "000002.xml"
    xml.write_text(text)
    with pytest.raises(ValueError, match=message.format(xml=re.escape(str(xml)))):
        VOCDetection(voc07, "trainval")


def test_unknown_class_dropped_with_explicit_classes(voc07: Path) -> None:
    (voc07 / "Annotations" / "000002.xml").write_text(voc_xml(12, 16, [("unicorn", 0, 1, 1, 2, 2)]))
    ds = VOCDetection(voc07, "trainval", classes=list(VOC_CLASSES))
    assert ds.load_raw(1)["boxes"].shape == (0, 4)


def test_missing_size_uses_image_and_xml_filename(voc07: Path, caplog: pytest.LogCaptureFixture) -> None:
    # 000002 stored as PNG under the name its XML gives, and without <size>.
    png = np.full((12, 16, 3), 77, dtype=np.uint8)
    assert cv2.imwrite(str(voc07 / "JPEGImages" / "other.png"), png)
    (voc07 / "Annotations" / "000002.xml").write_text(
        voc_xml(12, 16, [("cat", 0, 1, 1, 16, 12)], filename="other.png", size=False)
    )
    with caplog.at_level(logging.WARNING, logger="centernet.data.voc"):
        ds = VOCDetection(voc07, "trainval")
    assert "1 annotation file(s) lack <size>" in caplog.text
    assert ds.records[1].annotation.size is None
    raw = ds.load_raw(1)
    assert raw["file_name"] == "JPEGImages/other.png"
    np.testing.assert_array_equal(raw["image"], png)
    assert ds[1]["meta"]["orig_size"] == (12, 16)


def test_size_mismatch_warns_once(voc07: Path, caplog: pytest.LogCaptureFixture) -> None:
    (voc07 / "Annotations" / "000002.xml").write_text(voc_xml(99, 16, []))
    ds = VOCDetection(voc07, "trainval")
    with caplog.at_level(logging.WARNING, logger="centernet.data.base"):
        ds.load_raw(1)
        ds.load_raw(1)
    assert caplog.text.count("is 12x16 (h x w) but") == 1 and "000002.xml says 99x16" in caplog.text


def test_missing_image_file(voc07: Path) -> None:
    image = voc07 / "JPEGImages" / "000002.jpg"
    image.unlink()
    ds = VOCDetection(voc07, "trainval")  # only checked at load time
    with pytest.raises(FileNotFoundError, match=rf"image file not found: {re.escape(str(image))} \(image id 2\)"):
        ds[1]


def test_with_real_val_transform(voc07: Path) -> None:
    ds = VOCDetection(voc07, "trainval", transform=ValTransform(input_size=(16, 16), channel_order="bgr"))
    sample = ds[0]  # 20x30 image: c = (15, 10), s = 30, a factor 16/30 and a vertical offset
    assert sample["image"].shape == (3, 16, 16) and sample["image"].dtype == torch.uint8
    assert sample["meta"]["center"] == (15.0, 10.0) and sample["meta"]["scale"] == 30.0
    factor = 16.0 / 30.0
    pad_y = (16 - 20 * factor) / 2
    expected = BOXES_000001 * factor + np.array([0, pad_y, 0, pad_y], dtype=np.float32)
    np.testing.assert_allclose(sample["boxes"].numpy(), expected, atol=1e-4)
    np.testing.assert_array_equal(sample["labels"].numpy(), [CAT, DOG, PERSON])
    np.testing.assert_array_equal(sample["ignore"].numpy(), [False, True, False])
