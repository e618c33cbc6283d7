"""Pascal VOC detection dataset (``VOCdevkit`` layout, one or several years).

Layout read (``years=None`` points ``root`` at one ``VOC20xx`` folder; ``years=["2007", "2012"]`` points
it at the ``VOCdevkit`` folder that holds ``VOC2007/`` and ``VOC2012/``)::

    VOC2007/
      Annotations/000005.xml          one XML per image
      JPEGImages/000005.jpg
      ImageSets/Main/trainval.txt     one image name per line

Box convention: VOC XML boxes are 1-based inclusive pixel indices. They are converted to 0-based
continuous ``[x1, y1, x2, y2]`` by subtracting 1 from ``xmin`` and ``ymin`` and keeping ``xmax`` and
``ymax`` (the original CenterNet / devkit-to-COCO convention): a box over pixels 1..10 becomes
``[0, 10]``, width 10. With the plain (continuous) IoU these boxes have the devkit's widths
(``xmax - xmin + 1``). An evaluator using the devkit's ``+ 1`` widths wants inclusive boxes instead:
``ground_truth_for_eval(inclusive=True)`` gives ``[xmin - 1, ymin - 1, xmax - 1, ymax - 1]``, which is
what the original CenterNet effectively scored (it added 1 to all four detection coordinates and
compared them with the raw 1-based XML boxes using ``+ 1`` widths).

``difficult`` objects are ignore regions (``ignore=True``), as COCO ``iscrowd`` objects are.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from centernet.data.base import BOX_LEN, DetectionDataset, check_unique_classes
from centernet.data.sample import RawSample, SampleTransform

logger = logging.getLogger(__name__)

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # the 20 Pascal VOC classes in the devkit's order
VOC_PIXEL_ORIGIN = 1  # VOC pixel indices start at 1: subtracted from xmin / ymin
DEFAULT_IMAGE_SUFFIX = ".jpg"  # JPEGImages/<name>.jpg when the XML has no <filename>
_COORDS = ("xmin", "ymin", "xmax", "ymax")


@dataclass(frozen=True)
class VOCAnnotation:
    """The content of one VOC XML file.

    Attributes:
        filename: the ``<filename>`` entry (base name only), or None when absent or empty.
        size: ``(height, width)`` from ``<size>``, or None when absent or zero.
        boxes: ``float32 [N, 4]`` 0-based ``[x1, y1, x2, y2]`` (``xmin - 1, ymin - 1, xmax, ymax``).
        labels: ``int64 [N]`` contiguous labels.
        difficult: ``bool [N]`` the ``<difficult>`` flags.
    """

    filename: str | None
    size: tuple[int, int] | None
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray


@dataclass(frozen=True)
class VOCImageRecord:
    """One image of a VOC split.

    Attributes:
        name: the image name listed in ``ImageSets/Main/<split>.txt`` (e.g. ``"000005"``).
        image_path: the image file.
        xml_path: the annotation file.
        file_name: ``image_path`` relative to the dataset root, ``/``-separated.
        annotation: the parsed XML.
    """

    name: str
    image_path: Path
    xml_path: Path
    file_name: str
    annotation: VOCAnnotation


def _child_text(element: ET.Element, tag: str) -> str | None:
    """Stripped text of ``element``'s first ``tag`` child, or None when absent or empty."""
    child = element.find(tag)
    if child is None or child.text is None or not child.text.strip():
        return None
    return child.text.strip()


def _number(text: str | None, xml_path: Path, where: str, tag: str) -> float:
    """Parse a required number; raise ValueError naming the file, the place and the tag."""
    if text is None:
        raise ValueError(f"{xml_path}: {where} has no <{tag}>")
    try:
        return float(text)
    except ValueError as e:
        raise ValueError(f"{xml_path}: {where} <{tag}> is {text!r}, expected a number") from e


def _parse_size(root: ET.Element, xml_path: Path) -> tuple[int, int] | None:
    """``(height, width)`` from ``<size>``; None when it is absent or zero (the image decides)."""
    size = root.find("size")
    if size is None:
        return None
    width = _number(_child_text(size, "width"), xml_path, "<size>", "width")
    height = _number(_child_text(size, "height"), xml_path, "<size>", "height")
    if width < 0 or height < 0:
        raise ValueError(f"{xml_path}: <size> is {width:g}x{height:g} (w x h), expected non-negative numbers")
    if width == 0 or height == 0:
        return None
    return int(height), int(width)


def parse_voc_xml(xml_path: Path, class_to_label: Mapping[str, int], *, drop_unknown: bool) -> VOCAnnotation:
    """Read one VOC annotation file.

    Args:
        xml_path: the ``Annotations/<name>.xml`` file.
        class_to_label: class name -> contiguous label.
        drop_unknown: True skips objects whose class is not in ``class_to_label``; False raises.

    Returns:
        The parsed :class:`VOCAnnotation` (an object-less file gives empty arrays).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: malformed XML (with line and column), a root other than ``<annotation>``, an object
            without a name, box or numeric coordinate, an unknown class (``drop_unknown=False``), or a
            box with ``xmax < xmin`` or ``ymax < ymin``.
    """
    if not xml_path.is_file():
        raise FileNotFoundError(f"VOC annotation file not found: {xml_path}")
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as e:
        raise ValueError(f"malformed VOC XML {xml_path}: {e}") from e
    if root.tag != "annotation":
        raise ValueError(f"{xml_path}: root element is <{root.tag}>, expected <annotation>")
    filename = _child_text(root, "filename")
    boxes, labels, difficult = [], [], []
    for i, obj in enumerate(root.findall("object")):
        name = _child_text(obj, "name")
        if name is None:
            raise ValueError(f"{xml_path}: object {i} has no <name>")
        label = class_to_label.get(name)
        if label is None:
            if drop_unknown:
                continue
            raise ValueError(
                f"{xml_path}: object {i} has unknown class {name!r}; valid names are {list(class_to_label)} "
                "(list the classes to keep to drop the others)"
            )
        where = f"object {i} ({name!r})"
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise ValueError(f"{xml_path}: {where} has no <bndbox>")
        xmin, ymin, xmax, ymax = (_number(_child_text(bndbox, c), xml_path, where, c) for c in _COORDS)
        if xmax < xmin or ymax < ymin:
            raise ValueError(
                f"{xml_path}: {where} has an inverted box: xmin {xmin:g}, ymin {ymin:g}, xmax {xmax:g}, "
                f"ymax {ymax:g} (expected xmax >= xmin and ymax >= ymin)"
            )
        boxes.append((xmin - VOC_PIXEL_ORIGIN, ymin - VOC_PIXEL_ORIGIN, xmax, ymax))
        labels.append(label)
        difficult.append(_number(_child_text(obj, "difficult") or "0", xml_path, where, "difficult") != 0)
    return VOCAnnotation(
        filename=None if filename is None else Path(filename).name,
        size=_parse_size(root, xml_path),
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, BOX_LEN),
        labels=np.asarray(labels, dtype=np.int64),
        difficult=np.asarray(difficult, dtype=bool),
    )


def _year_dirs(root: Path, years: Sequence[str] | str | None) -> list[tuple[Path, str]]:
    """``(VOC20xx folder, its prefix in file names)`` for each year (``root`` itself for None)."""
    if years is None:
        return [(root, "")]
    if isinstance(years, str):
        years = [years]
    if not years:
        raise ValueError(f"years is empty for VOC root {root}; use None when root is a VOC20xx folder")
    dirs = []
    for year in years:
        folder = str(year) if str(year).startswith("VOC") else f"VOC{year}"
        if not (root / folder).is_dir():
            raise FileNotFoundError(f"VOC year folder not found: {root / folder} (years {list(years)})")
        dirs.append((root / folder, f"{folder}/"))
    return dirs


def _read_split(year_dir: Path, split: str) -> list[str]:
    """The image names listed in ``ImageSets/Main/<split>.txt`` (first token of each non-empty line)."""
    split_file = year_dir / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        available = sorted(p.stem for p in split_file.parent.glob("*.txt") if "_" not in p.stem)
        raise FileNotFoundError(f"VOC split file not found: {split_file} (available splits: {available})")
    return [line.split()[0] for line in split_file.read_text(encoding="utf-8").splitlines() if line.strip()]


class VOCDetection(DetectionDataset):
    """A Pascal VOC detection dataset (one split of one or several years, joined in ``years`` order).

    Image ids are ``1..N`` in split-file order (years in the given order); ``datasets/voc2coco.py``
    numbers its COCO images the same way. Category ids are ``1..C`` in class order.

    Attributes:
        coco: the split as COCO ground truth, built in memory on first use (``eval.metric: coco``); the
            VOC metrics use :meth:`ground_truth_for_eval`.
        records: ``[N]`` :class:`VOCImageRecord` per image, in dataset order.
        image_ids: ``[N]`` image ids ``1..N``.
        class_names: ``[C]`` class names, index = contiguous label.
        label_to_category_id: ``[C]`` category ids ``1..C``.
        category_id_to_label: inverse of ``label_to_category_id``.
        transform: the joint image/box transform, or None.
        seed: base seed of the per-sample generators.
        epoch: current epoch (see :meth:`set_epoch`).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str,
        *,
        years: Sequence[str] | None = None,
        transform: SampleTransform | None = None,
        classes: Sequence[str] | None = None,
        seed: int = 0,
    ) -> None:
        """Read the split list and parse every annotation file.

        Args:
            root: a ``VOC20xx`` folder (``years=None``) or the ``VOCdevkit`` folder holding them.
            split: the ``ImageSets/Main`` list to read (``train``, ``val``, ``trainval``, ``test``).
            years: e.g. ``["2007", "2012"]`` (``"VOC2007"`` also accepted); None: ``root`` is one year.
            transform: called as ``transform(image, boxes, rng)`` in ``__getitem__``; None keeps the
                raw image.
            classes: class names in label order; None means :data:`VOC_CLASSES`, and an object of
                another class is an error. With an explicit list, objects of other classes are dropped.
            seed: base seed of the per-sample generators.

        Raises:
            FileNotFoundError: a year folder, the split file or an annotation file is missing.
            ValueError: ``classes`` is empty or repeats a name, or an annotation file is invalid (see
                :func:`parse_voc_xml`).

        A missing or zero ``<size>`` is allowed: the decoded image gives the size (one warning).
        """
        self.root = Path(root)
        self.split = split
        super().__init__(transform=transform, seed=seed, source=f"VOC {split} split of {self.root}")
        if classes is not None:
            check_unique_classes(classes)
            if not classes:
                raise ValueError(f"classes is empty for {self._source}; use None for the 20 VOC classes")
        self.class_names = list(VOC_CLASSES if classes is None else classes)
        self.label_to_category_id = list(range(1, len(self.class_names) + 1))
        self.category_id_to_label = {cat: label for label, cat in enumerate(self.label_to_category_id)}
        class_to_label = {name: label for label, name in enumerate(self.class_names)}

        self.records: list[VOCImageRecord] = []
        for year_dir, prefix in _year_dirs(self.root, years):
            for name in _read_split(year_dir, split):
                xml_path = year_dir / "Annotations" / f"{name}.xml"
                ann = parse_voc_xml(xml_path, class_to_label, drop_unknown=classes is not None)
                image_name = ann.filename or f"{name}{DEFAULT_IMAGE_SUFFIX}"
                self.records.append(
                    VOCImageRecord(
                        name=name,
                        image_path=year_dir / "JPEGImages" / image_name,
                        xml_path=xml_path,
                        file_name=f"{prefix}JPEGImages/{image_name}",
                        annotation=ann,
                    )
                )
        self.image_ids = list(range(1, len(self.records) + 1))
        unsized = sum(r.annotation.size is None for r in self.records)
        if unsized:
            logger.warning("%s: %d annotation file(s) lack <size>; the decoded image size is used", self._source,
                           unsized)

    def image_names(self, index: int) -> tuple[str, ...]:
        """The image id string of the split file (``000001``), the image file name and ``file_name``."""
        record = self.records[self._check_index(index)]
        return tuple(dict.fromkeys((record.name, record.image_path.name, record.file_name)))

    def image_targets(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(boxes float32 [N, 4] 0-based xyxy, labels int64 [N], ignore bool [N] (= difficult))`` of one
        image (copies)."""
        annotation = self.records[self._check_index(index)].annotation
        return annotation.boxes.copy(), annotation.labels.copy(), annotation.difficult.copy()

    def load_raw(self, index: int) -> RawSample:
        """Load one image and its annotations without any transform.

        Args:
            index: position in ``image_ids`` (negative indices count from the end).

        Returns:
            ``RawSample``: image ``uint8 [H, W, 3]`` BGR, boxes ``float32 [N, 4]`` 0-based xyxy in image
            pixels, labels ``int64 [N]``, ignore ``bool [N]`` (= difficult), image_id, file_name
            (relative to ``root``).

        Raises:
            IndexError: ``index`` is out of range.
            FileNotFoundError: the image file does not exist.
            ValueError: the image file cannot be decoded.
        """
        index = self._check_index(index)
        record = self.records[index]
        ann = record.annotation
        expected_size = ann.size if ann.size is not None else (None, None)
        image = self._load_image(record.image_path, self.image_ids[index], expected_size, str(record.xml_path))
        return RawSample(
            image=image,
            boxes=ann.boxes.copy(),
            labels=ann.labels.copy(),
            ignore=ann.difficult.copy(),
            image_id=self.image_ids[index],
            file_name=record.file_name,
        )

    @functools.cached_property
    def coco(self) -> Any:
        """The split as COCO ground truth in memory (a pycocotools ``COCO``), so that ``eval.metric: coco``
        scores a VOC-format set as the original CenterNet did through its converted JSON files.

        Image ids are ``image_ids``, category ids ``label_to_category_id``; a difficult object is a crowd
        region (``iscrowd: 1``): COCO neither counts it as missed nor a detection on it as false, which
        is VOC's rule for difficult objects. ``width`` / ``height`` come from ``<size>`` (0 when absent).
        """
        from pycocotools.coco import COCO

        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for image_id, record in zip(self.image_ids, self.records, strict=True):
            height, width = record.annotation.size or (0, 0)
            images.append({"id": image_id, "file_name": record.file_name, "height": height, "width": width})
            ann = record.annotation
            for (x1, y1, x2, y2), label, difficult in zip(ann.boxes.tolist(), ann.labels.tolist(),
                                                         ann.difficult.tolist(), strict=True):
                annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                    "category_id": self.label_to_category_id[label], "bbox": [x1, y1, x2 - x1, y2 - y1],
                                    "area": (x2 - x1) * (y2 - y1), "iscrowd": int(difficult)})
        categories = [{"id": cid, "name": name} for cid, name in zip(self.label_to_category_id, self.class_names,
                                                                     strict=True)]
        ground_truth = COCO()
        ground_truth.dataset = {"images": images, "annotations": annotations, "categories": categories}
        with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints
            ground_truth.createIndex()
        return ground_truth

    def ground_truth_for_eval(self, *, inclusive: bool = False) -> list[dict[str, Any]]:
        """The ground truth a VOC evaluator needs, per image in dataset order.

        Args:
            inclusive: False gives the dataset's boxes (0-based continuous ``[xmin - 1, ymin - 1, xmax,
                ymax]``, for a plain IoU); True gives 0-based inclusive pixel boxes ``[xmin - 1, ymin - 1,
                xmax - 1, ymax - 1]``, for an IoU with the devkit's ``+ 1`` widths.

        Returns:
            One dict per image: ``image_id`` (int), ``boxes`` ``float32 [N, 4]`` 0-based xyxy,
            ``labels`` ``int64 [N]``, ``difficult`` ``bool [N]`` (difficult objects included, flagged).
        """
        shift = np.array([0, 0, VOC_PIXEL_ORIGIN, VOC_PIXEL_ORIGIN] if inclusive else [0] * BOX_LEN, dtype=np.float32)
        return [
            {
                "image_id": image_id,
                "boxes": r.annotation.boxes - shift,
                "labels": r.annotation.labels.copy(),
                "difficult": r.annotation.difficult.copy(),
            }
            for image_id, r in zip(self.image_ids, self.records, strict=True)
        ]
