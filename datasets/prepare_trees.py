"""Build the tree-crown detection set (COCO format) from the sample data of the ``deepforest`` package.

The ``deepforest`` pip package (MIT) ships real aerial RGB images with hand-drawn tree-crown boxes in
Pascal VOC XML. This script converts them into one class, ``tree`` (the XML labels ``Tree``, ``Alive``
and ``Dead`` all become it), and splits them so that no validation pixel is ever trained on:

* train: the two large crops of site YELL (``2019_YELL_2_541000_4977000_image_crop.png``, 1249x1035, and
  ``2019_YELL_2_528000_4978000_image_crop2.png``, 2299x2472) without their bottom ``--holdout-rows``
  rows (default 400), cut into square tiles (default 400 px, 100 px overlap; the last tile of a
  row/column is aligned with the edge of that region). Each box is clipped to the tile; a box keeps its
  place in a tile when at least ``--min-visible`` (default 0.5) of its area lies inside the tile,
  otherwise it is dropped from that tile.
* val_yell (in-domain hold-out): the bottom ``--holdout-rows`` rows of each YELL crop (rows 635-1035 of
  the first, 2072-2472 of the second by default), which no training tile touches, cut side by side into
  ``round(width / tile size)`` non-overlapping tiles of near-equal width (3 tiles of 416-417 px and 6 of
  383-384 px, 400 rows high); boxes are clipped and kept as for the training tiles. A crown crossing the
  boundary may appear, cut, on both sides; no pixel does. ``--holdout-rows 0`` writes no hold-out.
* val_yell_strips: the same hold-out rows as two whole strips (1249x400 and 2299x400), each crown once,
  for sliced evaluation (``tools/eval.py --slice``, the ``yell_strips`` set of the demo config).
* val_yell_select / val_yell_report: the hold-out tiles split by source crop, so that the two sets share
  no crown (the crops lie 13 km apart): ``select`` holds the 6 tiles of ``crop2`` (96 crowns) and chooses
  checkpoints and tuned settings, ``report`` the 3 tiles of ``crop`` (109 crowns) and gives the reported
  numbers. Their annotation files point at the ``val_yell`` images (no copies).
* val (cross-site): ``OSBS_029.png`` (61 trees) and ``SOAP_061.png`` (37 trees), whole (400x400), never tiled.

VOC boxes are 1-based inclusive pixels; they are read with ``centernet.data.voc.parse_voc_xml`` and so
become 0-based ``[xmin - 1, ymin - 1, xmax, ymax]``, i.e. COCO ``[x, y, w, h] = [xmin - 1, ymin - 1,
xmax - xmin + 1, ymax - ymin + 1]``.

Layout written under ``--out`` (default ``datasets/data/trees``)::

    train/<image stem>_x<x0>_y<y0>.png ...       val/OSBS_029.png  val/SOAP_061.png
    val_yell/<image stem>_x<x0>_y<y0>.png ...    val_yell_strips/<image stem>_x0_y<y0>.png
    annotations/instances_train.json            annotations/instances_val.json
    annotations/instances_val_yell.json         annotations/instances_val_yell_strips.json
    annotations/instances_val_yell_select.json  annotations/instances_val_yell_report.json
    .complete.json                              (marker with the parameters, written last)

Usage::

    pip install --no-deps deepforest==2.1.0     # only its data files are used; it is never imported
    python datasets/prepare_trees.py [--out datasets/data/trees] [--tile-size 400] [--overlap 100]
        [--min-visible 0.5] [--holdout-rows 400] [--force]

A complete set with the same parameters is left as it is (the script returns at once) unless ``--force``.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from centernet.data.tiling import Tile, TileCut, cut_tiles, tile_grid
from centernet.data.voc import parse_voc_xml

logger = logging.getLogger("prepare_trees")

DEEPFOREST_PACKAGE = "deepforest"
DEEPFOREST_VERSION = "2.1.0"
INSTALL_HINT = f"pip install --no-deps {DEEPFOREST_PACKAGE}=={DEEPFOREST_VERSION}"
CLASS_NAME = "tree"
CATEGORY_ID = 1
SOURCE_LABELS = ("Tree", "Alive", "Dead")  # every label of the XML files; all become CLASS_NAME
TRAIN_STEMS = ("2019_YELL_2_541000_4977000_image_crop", "2019_YELL_2_528000_4978000_image_crop2")
VAL_STEMS = ("OSBS_029", "SOAP_061")
IMAGE_SUFFIX = ".png"
DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "trees"
DEFAULT_TILE_SIZE = 400
DEFAULT_OVERLAP = 100
DEFAULT_MIN_VISIBLE = 0.5  # fraction of a box's area that must lie inside a tile for the box to be kept
DEFAULT_HOLDOUT_ROWS = 400  # bottom rows of each YELL crop kept out of training (one tile high)
HOLDOUT_SPLIT = "val_yell"
STRIPS_SPLIT = "val_yell_strips"  # the same hold-out rows as whole strips, for sliced evaluation
SELECT_SPLIT = "val_yell_select"  # hold-out tiles that choose checkpoints and tuned settings
REPORT_SPLIT = "val_yell_report"  # hold-out tiles of the other crop: the reported numbers
REPORT_STEM = TRAIN_STEMS[0]  # the crop whose hold-out tiles form the report set (the other: the selection set)
HOLDOUT_PARTS = (HOLDOUT_SPLIT, STRIPS_SPLIT, SELECT_SPLIT, REPORT_SPLIT)  # written only with a hold-out
SPLITS = ("train", "val", *HOLDOUT_PARTS)
MARKER_NAME = ".complete.json"
FORMAT_VERSION = 4  # 2: the YELL hold-out; 3: also as whole strips; 4: also split into selection/report sets
BOX_COORDS = 4


@dataclass(frozen=True)
class TileParams:
    """How the training crops are cut (stored in the marker file; a change triggers a rebuild)."""

    tile_size: int = DEFAULT_TILE_SIZE
    overlap: int = DEFAULT_OVERLAP
    min_visible: float = DEFAULT_MIN_VISIBLE
    holdout_rows: int = DEFAULT_HOLDOUT_ROWS
    format_version: int = FORMAT_VERSION


def deepforest_data_dir() -> Path:
    """The ``data`` folder of the installed ``deepforest`` package (found without importing it).

    Raises:
        FileNotFoundError: the package is not installed (the message says how to install it), or its
            folder lacks ``data/``.
    """
    spec = importlib.util.find_spec(DEEPFOREST_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the tree-crown data comes from the '{DEEPFOREST_PACKAGE}' package, which is not installed; "
            f"install it with: {INSTALL_HINT}"
        )
    data_dir = Path(next(iter(spec.submodule_search_locations))) / "data"
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir} not found; reinstall the package with: {INSTALL_HINT}")
    return data_dir


def holdout_columns(width: int, tile_size: int) -> list[tuple[int, int]]:
    """``(x0, x1)`` of the hold-out tiles: ``round(width / tile_size)`` (at least one) side-by-side tiles of
    near-equal width covering ``[0, width)`` without overlap, so that each hold-out pixel is scored once."""
    count = max(1, round(width / tile_size))
    edges = np.linspace(0, width, count + 1).round().astype(int).tolist()
    return list(itertools.pairwise(edges))


def _read_source(data_dir: Path, stem: str) -> tuple[np.ndarray, np.ndarray]:
    """``(image BGR uint8 [H, W, 3], boxes float [N, 4] 0-based xyxy)`` of one deepforest image."""
    image_path = data_dir / f"{stem}{IMAGE_SUFFIX}"
    image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read image {image_path} (reinstall with: {INSTALL_HINT})")
    labels = dict.fromkeys(SOURCE_LABELS, 0)
    annotation = parse_voc_xml(data_dir / f"{stem}.xml", labels, drop_unknown=False)
    if annotation.size is not None and annotation.size != image.shape[:2]:
        raise ValueError(
            f"{data_dir / stem}.xml: <size> is {annotation.size} (h, w) but the image is {image.shape[:2]}"
        )
    return image, annotation.boxes.astype(np.float64)


class _CocoWriter:
    """Accumulates one split's COCO dict (image ids and annotation ids from 1)."""

    def __init__(self) -> None:
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []

    def add(self, file_name: str, height: int, width: int, boxes: np.ndarray) -> None:
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        for x1, y1, x2, y2 in boxes.tolist():
            w, h = x2 - x1, y2 - y1
            self.annotations.append(
                {
                    "id": len(self.annotations) + 1,
                    "image_id": image_id,
                    "category_id": CATEGORY_ID,
                    "bbox": [x1, y1, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )

    def dataset(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "annotations": self.annotations,
            "categories": [{"id": CATEGORY_ID, "name": CLASS_NAME, "supercategory": CLASS_NAME}],
        }


def _write_image(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write image {path}")


def _yell_splits(data_dir: Path, out_dir: Path, params: TileParams) -> dict[str, dict[str, Any]]:
    """The training tiles, the hold-out tiles (bottom ``holdout_rows`` rows) and the hold-out strips whole
    of the two YELL crops, by split name."""
    train, holdout, strips = _CocoWriter(), _CocoWriter(), _CocoWriter()
    parts = {SELECT_SPLIT: _CocoWriter(), REPORT_SPLIT: _CocoWriter()}
    for stem in TRAIN_STEMS:
        image, boxes = _read_source(data_dir, stem)
        height, width = image.shape[:2]
        train_rows = height - params.holdout_rows
        if train_rows < 1:
            raise ValueError(f"--holdout-rows {params.holdout_rows} leaves no training rows in {stem} ({height} rows)")
        # tiles are cut from the rows above the hold-out only: none reaches the hold-out rows
        for cut in cut_tiles(image, boxes, tile_grid(train_rows, width, params.tile_size, params.overlap),
                             params.min_visible):
            _add_tile(train, out_dir, f"train/{stem}", cut)
        if params.holdout_rows == 0:
            continue
        columns = [Tile(x0, train_rows, x1, height) for x0, x1 in holdout_columns(width, params.tile_size)]
        part = parts[REPORT_SPLIT if stem == REPORT_STEM else SELECT_SPLIT]
        for cut in cut_tiles(image, boxes, columns, params.min_visible):
            file_name = _add_tile(holdout, out_dir, f"{HOLDOUT_SPLIT}/{stem}", cut)
            part.add(file_name, cut.tile.height, cut.tile.width, cut.boxes)  # the same image file
        for cut in cut_tiles(image, boxes, [Tile(0, train_rows, width, height)], params.min_visible):
            _add_tile(strips, out_dir, f"{STRIPS_SPLIT}/{stem}", cut)
        logger.info("%s: rows %d-%d held out (%s, and whole in %s)", stem, train_rows, height, HOLDOUT_SPLIT,
                    STRIPS_SPLIT)
    return {"train": train.dataset(), HOLDOUT_SPLIT: holdout.dataset(), STRIPS_SPLIT: strips.dataset(),
            **{name: writer.dataset() for name, writer in parts.items()}}


def _add_tile(writer: _CocoWriter, out_dir: Path, prefix: str, cut: TileCut) -> str:
    """Write one tile (named after its top-left corner in the source), record its clipped boxes; its file name."""
    file_name = f"{prefix}_x{cut.tile.x0}_y{cut.tile.y0}{IMAGE_SUFFIX}"
    _write_image(out_dir / file_name, cut.image)
    writer.add(file_name, cut.tile.height, cut.tile.width, cut.boxes)
    return file_name


def _val_split(data_dir: Path, out_dir: Path) -> dict[str, Any]:
    writer = _CocoWriter()
    for stem in VAL_STEMS:
        image, boxes = _read_source(data_dir, stem)
        file_name = f"val/{stem}{IMAGE_SUFFIX}"
        shutil.copyfile(data_dir / f"{stem}{IMAGE_SUFFIX}", out_dir / file_name)
        writer.add(file_name, image.shape[0], image.shape[1], boxes)
    return writer.dataset()


def _is_complete(out_dir: Path, params: TileParams) -> bool:
    marker = out_dir / MARKER_NAME
    try:
        return bool(json.loads(marker.read_text(encoding="utf-8")) == asdict(params))
    except (OSError, ValueError):
        return False


def prepare_trees(
    out_dir: str | Path = DEFAULT_OUT,
    *,
    data_dir: str | Path | None = None,
    params: TileParams = TileParams(),
    force: bool = False,
) -> dict[str, int]:
    """Write the tree-crown set (tiles, val images, two COCO JSON files) to ``out_dir``.

    Args:
        out_dir: output folder (created).
        data_dir: folder holding the deepforest images and XML files (default: the installed package's).
        params: tiling parameters.
        force: rebuild even when ``out_dir`` holds a complete set with the same parameters.

    Returns:
        ``{"<split>_images", "<split>_boxes"}`` counts for every split of :data:`SPLITS` (zeros when
        skipped).

    Raises:
        FileNotFoundError: deepforest (or one of its files) is missing; the message says how to install it.
        ValueError: bad tiling parameters or an inconsistent XML file.
    """
    out_dir = Path(out_dir)
    if not force and _is_complete(out_dir, params):
        logger.info("%s already holds the tree-crown set (use --force to rebuild)", out_dir)
        return {f"{split}_{kind}": 0 for split in SPLITS for kind in ("images", "boxes")}
    if not 0.0 <= params.min_visible <= 1.0:
        raise ValueError(f"min_visible must be in [0, 1], got {params.min_visible}")
    if params.holdout_rows < 0:
        raise ValueError(f"holdout_rows must be >= 0, got {params.holdout_rows}")
    source = Path(data_dir) if data_dir is not None else deepforest_data_dir()
    (out_dir / MARKER_NAME).unlink(missing_ok=True)
    for sub in SPLITS:
        shutil.rmtree(out_dir / sub, ignore_errors=True)
        (out_dir / "annotations" / f"instances_{sub}.json").unlink(missing_ok=True)
    for sub in ("annotations", "train", "val", *((HOLDOUT_SPLIT, STRIPS_SPLIT) if params.holdout_rows else ())):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    splits = _yell_splits(source, out_dir, params)
    splits["val"] = _val_split(source, out_dir)
    counts: dict[str, int] = {}
    for split in SPLITS:
        dataset = splits[split]
        counts[f"{split}_images"] = len(dataset["images"])
        counts[f"{split}_boxes"] = len(dataset["annotations"])
        if split in HOLDOUT_PARTS and params.holdout_rows == 0:
            continue
        (out_dir / "annotations" / f"instances_{split}.json").write_text(json.dumps(dataset), encoding="utf-8")
    (out_dir / MARKER_NAME).write_text(json.dumps(asdict(params)), encoding="utf-8")
    logger.info(
        "wrote %s: train %d tiles / %d boxes, %s (in-domain hold-out) %d tiles / %d boxes (%s: %d strips / %d "
        "boxes; %s %d / %d and %s %d / %d), val (cross-site) %d images / %d boxes", out_dir, counts["train_images"],
        counts["train_boxes"], HOLDOUT_SPLIT, counts[f"{HOLDOUT_SPLIT}_images"], counts[f"{HOLDOUT_SPLIT}_boxes"],
        STRIPS_SPLIT, counts[f"{STRIPS_SPLIT}_images"], counts[f"{STRIPS_SPLIT}_boxes"], SELECT_SPLIT,
        counts[f"{SELECT_SPLIT}_images"], counts[f"{SELECT_SPLIT}_boxes"], REPORT_SPLIT,
        counts[f"{REPORT_SPLIT}_images"], counts[f"{REPORT_SPLIT}_boxes"], counts["val_images"], counts["val_boxes"],
    )
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="prepare_trees.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--data-dir", type=Path, default=None, help="deepforest data folder (default: installed)")
    parser.add_argument("--tile-size", type=int, default=DEFAULT_TILE_SIZE, help="tile side in pixels")
    parser.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="pixels shared by neighbouring tiles")
    parser.add_argument("--min-visible", type=float, default=DEFAULT_MIN_VISIBLE,
                        help="fraction of a box's area a tile must hold to keep the box")
    parser.add_argument("--holdout-rows", type=int, default=DEFAULT_HOLDOUT_ROWS,
                        help="bottom rows of each YELL crop held out as val_yell (0: no hold-out)")
    parser.add_argument("--force", action="store_true", help="rebuild even if a complete set exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    params = TileParams(tile_size=args.tile_size, overlap=args.overlap, min_visible=args.min_visible,
                        holdout_rows=args.holdout_rows)
    try:
        prepare_trees(args.out, data_dir=args.data_dir, params=params, force=args.force)
    except (FileNotFoundError, ValueError, OSError) as error:
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
