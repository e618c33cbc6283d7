"""Cut a COCO-format dataset of large images into overlapping square tiles for training.

Each image is covered by tiles of ``--tile-size`` pixels, neighbours sharing ``--overlap`` pixels, laid
out by :func:`centernet.data.tiling.tile_grid` (row by row; the last tile of a row/column is moved back
to end at the image edge; an image smaller than a tile gives one tile clipped to it), the same rule as
sliced inference uses. Each box is clipped to each tile and kept there when at least ``--min-visible``
of its area lies inside (the rule of ``augment.albumentations_bbox.min_visibility``); boxes of zero area
are dropped. Every tile holding a box is written; of the tiles holding none, a share ``--empty-share``
(``round(share * count)`` of them, drawn with ``numpy.random.default_rng(--seed)``) is kept.

Kept annotations keep ``category_id`` and ``iscrowd`` (default 0); ``area`` is recomputed as ``w * h`` of
the clipped box and ``segmentation`` is dropped (a clipped polygon or mask is not needed for boxes).
Image and annotation ids are new, from 1; categories are copied unchanged. Each tile's image entry also
records ``source_image_id``, ``source_file_name`` and ``offset: [x0, y0]``: adding the offset to a tile's
boxes puts them back in the source image. The parameters are stored under the top-level key ``slicing``.

Layout written under ``--out``::

    images/<source stem>_x<x0>_y<y0>.<fmt> ...
    annotations.json                            (written last: its presence marks a complete set)

Usage::

    python datasets/slice_coco.py --ann-file IN.json --img-dir IMG_DIR --out OUT_DIR --tile-size 400
        --overlap 100 [--min-visible 0.5] [--empty-share 1.0] [--seed 0] [--image-format png]
        [--overwrite] [--no-progress]

An existing ``OUT_DIR/annotations.json`` is never replaced without ``--overwrite``; with it, the file and
tiles of the same names are replaced and other files in ``OUT_DIR`` are left as they are.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from centernet.data.tiling import BOX_COORDS, Tile, clip_boxes_to_tile, cut_tiles, tile_grid, tile_origins
from centernet.utils.image_files import read_bgr

logger = logging.getLogger("slice_coco")

ANNOTATIONS_NAME = "annotations.json"
IMAGES_DIR = "images"


@dataclass
class _Source:
    """One source image: its COCO entry, where it lies, its size and its valid annotations.

    Attributes:
        entry: the image's entry of the input file.
        path: the image file.
        height: rows (from the entry, else from the decoded image).
        width: columns.
        annotations: the image's annotations, in file order.
        boxes: float ``[N, 4]`` their boxes as 0-based ``[x1, y1, x2, y2]``.
    """

    entry: dict[str, Any]
    path: Path
    height: int
    width: int
    annotations: list[dict[str, Any]]
    boxes: np.ndarray


def check_params(tile_size: int, overlap: int, min_visible: float, empty_share: float, image_format: str) -> None:
    """Raise ``ValueError`` (one line naming the value and what is expected) on a bad parameter."""
    tile_origins(1, tile_size, overlap)  # the tiler's own checks of tile_size >= 1 and 0 <= overlap < tile_size
    if not 0.0 <= min_visible <= 1.0:
        raise ValueError(f"min_visible must be in [0, 1], got {min_visible}")
    if not 0.0 <= empty_share <= 1.0:
        raise ValueError(f"empty_share must be in [0, 1], got {empty_share}")
    if not cv2.haveImageWriter(f".{image_format}"):
        raise ValueError(f"image_format {image_format!r}: OpenCV cannot write it (expected e.g. png or jpg)")


def load_coco(ann_file: Path) -> dict[str, Any]:
    """The input JSON, checked to hold the COCO lists ``images``, ``annotations`` and ``categories``."""
    if not ann_file.is_file():
        raise FileNotFoundError(f"annotation file {ann_file} not found (expected a COCO instances JSON file)")
    try:
        coco = json.loads(ann_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{ann_file}: not valid JSON ({error})") from error
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco, dict) or not isinstance(coco.get(key), list):
            raise ValueError(f"{ann_file}: not a COCO instances file ('{key}' must be a list)")
    return coco


def _xyxy(annotation: dict[str, Any], ann_file: Path) -> list[float]:
    """The COCO ``[x, y, w, h]`` of one annotation as ``[x1, y1, x2, y2]``, checked to be 4 finite numbers."""
    bbox = annotation.get("bbox")
    if not (
        isinstance(bbox, list) and len(bbox) == BOX_COORDS
        and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
    ):
        raise ValueError(f"{ann_file}: annotation id {annotation.get('id')}: bbox must be 4 numbers [x, y, w, h], "
                         f"got {json.dumps(bbox)}")
    x, y, w, h = (float(v) for v in bbox)
    return [x, y, x + w, y + h]


def _sources(coco: dict[str, Any], ann_file: Path, img_dir: Path) -> list[_Source]:
    """The source images in file order, with their boxes; every bbox is checked before any tile is written."""
    by_image: dict[Any, list[dict[str, Any]]] = {}
    for annotation in coco["annotations"]:
        if not isinstance(annotation, dict) or "category_id" not in annotation:
            raise ValueError(f"{ann_file}: annotation {json.dumps(annotation)[:80]} lacks 'category_id'")
        _xyxy(annotation, ann_file)
        by_image.setdefault(annotation.get("image_id"), []).append(annotation)
    sources, stems = [], {}
    for entry in coco["images"]:
        if not isinstance(entry, dict) or "id" not in entry or not isinstance(entry.get("file_name"), str):
            raise ValueError(f"{ann_file}: image entry {json.dumps(entry)[:80]} lacks 'id' or 'file_name'")
        stem = Path(entry["file_name"]).stem
        if stem in stems:  # tiles are named after the stem: two sources would write the same files
            raise ValueError(f"{ann_file}: images {stems[stem]} and {entry['file_name']} share the stem {stem!r}")
        stems[stem] = entry["file_name"]
        path = img_dir / entry["file_name"]
        if isinstance(entry.get("height"), int) and isinstance(entry.get("width"), int):
            height, width = entry["height"], entry["width"]
        else:  # no size in the file: decode the image once to plan its tiles
            height, width = _read_source(path, entry["id"]).shape[:2]
        annotations = by_image.pop(entry["id"], [])
        boxes = np.array([_xyxy(a, ann_file) for a in annotations], dtype=np.float64).reshape(-1, BOX_COORDS)
        sources.append(_Source(entry, path, height, width, annotations, boxes))
    if by_image:
        logger.warning("%d annotations name image ids not in the file (ignored): %s",
                       sum(map(len, by_image.values())), sorted(map(str, by_image))[:5])
    return sources


def _read_source(path: Path, image_id: Any) -> np.ndarray:
    """The BGR uint8 ``[H, W, 3]`` pixels of one source image; the error names the file and the image id."""
    try:
        return read_bgr(path)
    except ValueError as error:
        raise ValueError(f"image id {image_id}: {error}") from error


def _empty_tiles_to_keep(
    sources: list[_Source], grids: list[list[Tile]], min_visible: float, empty_share: float, seed: int
) -> tuple[set[int], int]:
    """``(kept, count)``: which of the ``count`` empty tiles (numbered over all images, in tile order) to keep.

    The count over the whole set is needed to keep exactly ``round(empty_share * count)``, so the empty
    tiles are found from the sizes and boxes alone, before any pixel is read.
    """
    count = 0
    for source, grid in zip(sources, grids):
        for tile in grid:
            _, kept = clip_boxes_to_tile(source.boxes, tile.x0, tile.y0, tile.width, tile.height, min_visible)
            count += not kept.any()
    chosen = np.random.default_rng(seed).choice(count, size=round(empty_share * count), replace=False)
    return set(chosen.tolist()), count


def _write_image(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write image {path}")


def _tile_annotations(source: _Source, boxes: np.ndarray, kept: np.ndarray, image_id: int, first_id: int) -> list:
    """COCO annotations of one tile: ``boxes`` float ``[K, 4]`` (tile pixels) of the sources ``kept`` bool ``[N]``."""
    originals = [a for a, k in zip(source.annotations, kept.tolist()) if k]
    annotations = []
    for index, (original, (x1, y1, x2, y2)) in enumerate(zip(originals, boxes.tolist())):
        w, h = x2 - x1, y2 - y1
        annotations.append({"id": first_id + index, "image_id": image_id, "category_id": original["category_id"],
                            "bbox": [x1, y1, w, h], "area": w * h, "iscrowd": original.get("iscrowd", 0)})
    return annotations


def slice_coco(
    ann_file: str | os.PathLike[str],
    img_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    tile_size: int,
    overlap: int,
    min_visible: float = 0.5,
    empty_share: float = 1.0,
    seed: int = 0,
    image_format: str = "png",
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, int]:
    """Write the tiles of every image of ``ann_file`` and their COCO file to ``out_dir`` (see the module doc).

    Args:
        ann_file: COCO instances JSON of the source images.
        img_dir: folder the source ``file_name`` entries are relative to.
        out_dir: output folder (created); tiles go to ``images/``, the COCO file to ``annotations.json``.
        tile_size: tile side in pixels.
        overlap: pixels shared by neighbouring tiles, in ``[0, tile_size)``.
        min_visible: share of a box's area a tile must hold to keep the box, in ``[0, 1]``.
        empty_share: share of the tiles without boxes to keep, in ``[0, 1]``.
        seed: seed of the draw of the empty tiles.
        image_format: extension of the tile files (``png`` is lossless).
        overwrite: replace an existing ``annotations.json``.
        progress: show a progress bar over the source images.

    Returns:
        Counts ``{"images", "tiles", "empty_tiles_kept", "empty_tiles_dropped", "boxes"}``: source images,
        tiles written, empty tiles kept and dropped, annotations written.

    Raises:
        FileNotFoundError: ``ann_file`` does not exist.
        FileExistsError: ``out_dir/annotations.json`` exists and ``overwrite`` is False.
        ValueError: a bad parameter, JSON content or unreadable source image (one line naming it).
        OSError: a tile or the JSON file cannot be written.
    """
    ann_file, img_dir, out_dir = Path(ann_file), Path(img_dir), Path(out_dir)
    image_format = image_format.lstrip(".").lower()
    check_params(tile_size, overlap, min_visible, empty_share, image_format)
    coco = load_coco(ann_file)
    out_file = out_dir / ANNOTATIONS_NAME
    if out_file.exists() and not overwrite:
        raise FileExistsError(f"{out_file} already exists; choose another --out or add --overwrite")
    sources = _sources(coco, ann_file, img_dir)
    grids = [tile_grid(s.height, s.width, tile_size, overlap) for s in sources]
    keep_empty, num_empty = _empty_tiles_to_keep(sources, grids, min_visible, empty_share, seed)
    (out_dir / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    empty_index = 0
    with tqdm(total=len(sources), desc="slice", unit="image", disable=not progress, dynamic_ncols=True) as bar:
        for source, grid in zip(sources, grids):
            image = _read_source(source.path, source.entry["id"])
            if image.shape[:2] != (source.height, source.width):
                raise ValueError(f"{ann_file}: image id {source.entry['id']} ({source.path}) is {image.shape[1]}x"
                                 f"{image.shape[0]} (w x h) but the file says {source.width}x{source.height}")
            for cut in cut_tiles(image, source.boxes, grid, min_visible):
                if len(cut.boxes) == 0:
                    empty_index += 1
                    if empty_index - 1 not in keep_empty:
                        continue
                image_id = len(images) + 1
                file_name = f"{IMAGES_DIR}/{source.path.stem}_x{cut.tile.x0}_y{cut.tile.y0}.{image_format}"
                _write_image(out_dir / file_name, cut.image)
                images.append({"id": image_id, "file_name": file_name, "width": cut.tile.width,
                               "height": cut.tile.height, "source_image_id": source.entry["id"],
                               "source_file_name": source.entry["file_name"], "offset": [cut.tile.x0, cut.tile.y0]})
                annotations += _tile_annotations(source, cut.boxes, cut.kept, image_id, len(annotations) + 1)
            bar.update()
    slicing = {"tile_size": tile_size, "overlap": overlap, "min_visible": min_visible, "empty_share": empty_share,
               "seed": seed, "image_format": image_format, "source_ann_file": str(ann_file),
               "source_img_dir": str(img_dir)}
    dataset = {"images": images, "annotations": annotations, "categories": coco["categories"], "slicing": slicing}
    # written to a temporary file and renamed, so annotations.json only ever exists complete
    partial = out_file.with_name(f".{ANNOTATIONS_NAME}.partial")
    partial.write_text(json.dumps(dataset), encoding="utf-8")
    os.replace(partial, out_file)
    counts = {"images": len(sources), "tiles": len(images), "empty_tiles_kept": len(keep_empty),
              "empty_tiles_dropped": num_empty - len(keep_empty), "boxes": len(annotations)}
    logger.info("wrote %s: %d tiles of %d images (%d empty kept, %d dropped), %d boxes", out_file, counts["tiles"],
                counts["images"], counts["empty_tiles_kept"], counts["empty_tiles_dropped"], counts["boxes"])
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="slice_coco.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ann-file", type=Path, required=True, help="COCO instances JSON of the source images")
    parser.add_argument("--img-dir", type=Path, required=True, help="folder the file_name entries are relative to")
    parser.add_argument("--out", type=Path, required=True, help="output folder (images/ and annotations.json)")
    parser.add_argument("--tile-size", type=int, required=True, help="tile side in pixels")
    parser.add_argument("--overlap", type=int, required=True, help="pixels shared by neighbouring tiles")
    parser.add_argument("--min-visible", type=float, default=0.5,
                        help="share of a box's area a tile must hold to keep the box (default 0.5)")
    parser.add_argument("--empty-share", type=float, default=1.0,
                        help="share of the tiles without boxes to keep, drawn with --seed (default 1.0: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw of empty tiles (default 0)")
    parser.add_argument("--image-format", default="png", help="tile file extension (default png, lossless)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT/annotations.json")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        slice_coco(args.ann_file, args.img_dir, args.out, tile_size=args.tile_size, overlap=args.overlap,
                   min_visible=args.min_visible, empty_share=args.empty_share, seed=args.seed,
                   image_format=args.image_format, overwrite=args.overwrite, progress=not args.no_progress)
    except (FileNotFoundError, FileExistsError, ValueError, OSError) as error:
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
