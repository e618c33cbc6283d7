"""Cutting an image plane into overlapping tiles, and boxes into the tiles that hold them.

The geometry shared by the training tiler (``datasets/slice_coco.py``, ``datasets/prepare_trees.py``) and
sliced inference (:mod:`centernet.inference.slicing`), so that the windows a model is run on at test time
are laid out by the same rule as the tiles it was trained on (docs/inference.md, "Large images").

Coordinates are 0-based image pixels with exclusive right/bottom edges: a tile ``(x0, y0, x1, y1)`` holds
the pixels ``x0 <= x < x1``, ``y0 <= y < y1``; boxes are ``[x1, y1, x2, y2]`` floats.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

BOX_COORDS = 4


def tile_origins(length: int, tile_size: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile_size`` covering ``[0, length)`` with at least ``overlap`` pixels shared.

    Tiles start every ``tile_size - overlap`` pixels; the last one is moved back to end at ``length``
    (so it may overlap its neighbour more). A side not longer than ``tile_size`` gives one tile at 0.

    Raises:
        ValueError: ``tile_size < 1`` or ``overlap`` not in ``[0, tile_size)``.
    """
    if tile_size < 1:
        raise ValueError(f"tile size must be >= 1, got {tile_size}")
    if not 0 <= overlap < tile_size:
        raise ValueError(f"overlap must be in [0, tile_size={tile_size}), got {overlap}")
    if length <= tile_size:
        return [0]
    stride = tile_size - overlap
    origins = list(range(0, length - tile_size + 1, stride))
    if origins[-1] != length - tile_size:
        origins.append(length - tile_size)
    return origins


@dataclass(frozen=True)
class Tile:
    """One tile of an image: pixels ``x0 <= x < x1``, ``y0 <= y < y1``."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


def tile_grid(height: int, width: int, tile_size: int, overlap: int) -> list[Tile]:
    """Tiles of ``tile_size`` (clipped to the image where it is smaller) covering every pixel, row by row.

    Raises:
        ValueError: an empty image, or a bad ``tile_size`` / ``overlap`` (see :func:`tile_origins`).
    """
    if height < 1 or width < 1:
        raise ValueError(f"cannot tile an empty image ({height}x{width})")
    return [
        Tile(x0, y0, min(x0 + tile_size, width), min(y0 + tile_size, height))
        for y0 in tile_origins(height, tile_size, overlap)
        for x0 in tile_origins(width, tile_size, overlap)
    ]


def overlap_pixels(tile_size: int, overlap: float) -> int:
    """Pixels shared by neighbouring tiles for an ``overlap`` fraction in ``[0, 1)`` of ``tile_size``.

    Raises:
        ValueError: ``overlap`` outside ``[0, 1)``.
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be a fraction in [0, 1), got {overlap}")
    return min(round(tile_size * overlap), tile_size - 1)


def clip_boxes_to_tile(
    boxes: np.ndarray, x0: float, y0: float, width: float, height: float, min_visible: float
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of one tile: clipped to the tile, shifted to its origin, kept when enough of them is inside.

    Args:
        boxes: float ``[N, 4]`` ``[x1, y1, x2, y2]`` in 0-based image pixels (x2/y2 exclusive edges).
        x0: left edge of the tile in image pixels.
        y0: top edge of the tile.
        width: tile width.
        height: tile height.
        min_visible: keep a box when ``area(box & tile) / area(box) >= min_visible`` (and the part
            inside has a positive area): the rule of ``augment.albumentations_bbox.min_visibility``;
            boxes of zero area are dropped.

    Returns:
        ``(tile_boxes, kept)``: float ``[K, 4]`` the kept boxes clipped to ``[0, width] x [0, height]``
        in tile pixels, and bool ``[N]`` which input boxes they are.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, BOX_COORDS)
    clipped = boxes - np.array([x0, y0, x0, y0])
    clipped[:, 0::2] = clipped[:, 0::2].clip(0.0, width)
    clipped[:, 1::2] = clipped[:, 1::2].clip(0.0, height)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    kept = (area > 0) & (inside > 0) & (inside >= min_visible * np.where(area > 0, area, 1.0))
    return clipped[kept], kept


def batches(items: list[Tile], size: int) -> Iterator[list[Tile]]:
    """``items`` in consecutive chunks of at most ``size``."""
    for start in range(0, len(items), max(1, size)):
        yield items[start : start + size]


@dataclass(frozen=True)
class TileCut:
    """One tile cut from an image: its place, its pixels and the boxes it keeps.

    Attributes:
        tile: where the tile lies in the source image.
        image: the tile's pixels (a view into the source array).
        boxes: float ``[K, 4]`` kept boxes in tile pixels.
        kept: bool ``[N]`` which source boxes they are (to carry labels and ids along).
    """

    tile: Tile
    image: np.ndarray
    boxes: np.ndarray
    kept: np.ndarray


def cut_tiles(image: np.ndarray, boxes: np.ndarray, tiles: list[Tile], min_visible: float) -> Iterator[TileCut]:
    """Each of ``tiles`` cut from ``image`` ``[H, W, ...]`` with ``boxes`` ``[N, 4]`` clipped to it
    (:func:`clip_boxes_to_tile`)."""
    for tile in tiles:
        tile_boxes, kept = clip_boxes_to_tile(boxes, tile.x0, tile.y0, tile.width, tile.height, min_visible)
        yield TileCut(tile, image[tile.y0 : tile.y1, tile.x0 : tile.x1], tile_boxes, kept)
