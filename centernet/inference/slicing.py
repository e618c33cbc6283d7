"""Sliced inference: a detector run on overlapping windows of an image of any size.

The image (an array, or a raster read window by window, :mod:`centernet.data.rasters`) is covered by
square windows of ``size`` image pixels laid out as the training tiles are (:func:`centernet.data.tiling.tile_grid`:
a stride of ``size - overlap``, the last window of a row or column moved back to end at the image's
edge). Each window is resized by ``scale`` to a network input of ``round(size * scale)`` pixels (a
multiple of the model's size divisor; a window cut short by a small image is padded at its bottom and
right), run in batches of ``batch_size``, decoded, and moved to image pixels. The detections of all
windows, and optionally of one whole-image pass at the model's input size, are merged across the
seams by :func:`centernet.inference.seam_merge.merge_window_detections` (docs/inference.md, "Large images").

Memory is bounded by one batch of windows plus the detections, never the whole image when the source
reads windows lazily.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np
from tqdm import tqdm

from centernet.data.tiling import Tile, batches, overlap_pixels, tile_grid
from centernet.decode import BOX_COORDS, NUM_DET_COLUMNS, SCORE_COLUMN
from centernet.inference.seam_merge import SeamMergeSettings, merge_window_detections

AUTO_BATCH = {"cpu": 1, "cuda": 16}  # windows per forward pass when slice batch_size is 0
PROGRESS_MIN_WINDOWS = 16  # a progress bar is shown for images cut into at least this many windows
BLOCKS_PER_SIDE = 4  # windows per side of a merge block (large rasters merge block by block)

# Runs a batch of windows: uint8 BGR ``[B, S, S, 3]`` -> per window float ``[K, 6]`` rows in network-input pixels.
WindowPredictor = Callable[[np.ndarray], Sequence[np.ndarray]]


class ImageSource(Protocol):
    """An image that can be read window by window."""

    @property
    def height(self) -> int: ...

    @property
    def width(self) -> int: ...

    def read(self, tile: Tile) -> np.ndarray:
        """uint8 BGR ``[tile.height, tile.width, 3]`` pixels of ``tile``."""
        ...


@dataclass(frozen=True)
class ArraySource:
    """An image already in memory (uint8 BGR ``[H, W, 3]``)."""

    image: np.ndarray

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    def read(self, tile: Tile) -> np.ndarray:
        return self.image[tile.y0 : tile.y1, tile.x0 : tile.x1]


@dataclass(frozen=True)
class SliceSettings:
    """How an image is cut into windows and how their detections are merged.

    Attributes:
        size: window side in image pixels.
        overlap: share of the window that neighbouring windows have in common, in ``[0, 1)``.
        scale: network pixels per image pixel; the network input is ``round(size * scale)`` pixels.
        full_image: also run the whole image at the model's input size and merge its detections (objects
            larger than a window).
        batch_size: windows per forward pass; 0 = :data:`AUTO_BATCH` of the device (on a 2-core CPU batches
            ran slower per window than single windows, docs/performance.md; a GPU wants many).
        edge_margin: a box within this many network pixels of a window edge inside the image is *cut*.
        min_score: rows of a window scoring below this are dropped before the merge.
        merge: the seam-merge thresholds.
    """

    size: int
    overlap: float = 0.2
    scale: float = 1.0
    full_image: bool = False
    batch_size: int = 0
    edge_margin: float = 4.0
    min_score: float = 0.0
    merge: SeamMergeSettings = field(default_factory=SeamMergeSettings)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"slice size must be a positive number of pixels, got {self.size}")
        overlap_pixels(self.size, self.overlap)  # raises for an overlap outside [0, 1)
        if not self.scale > 0:
            raise ValueError(f"slice scale must be > 0, got {self.scale}")
        if self.batch_size < 0:
            raise ValueError(f"slice batch_size must be >= 0 (0 = chosen for the device), got {self.batch_size}")

    @property
    def network_size(self) -> int:
        """Side of the network input of one window."""
        return round(self.size * self.scale)

    def check_divisor(self, divisor: int) -> None:
        """Raise unless the window's network input is a multiple of the model's size divisor."""
        net = self.network_size
        if net % divisor:
            hint = "" if self.scale == 1 else f" (size {self.size} x scale {self.scale:g})"
            lower, upper = net // divisor * divisor, (net // divisor + 1) * divisor
            raise ValueError(
                f"slice size {net}{hint} is not a multiple of {divisor}, the model's stride; "
                f"use e.g. {max(lower, divisor)} or {upper}"
            )

    def for_device(self, device_type: str) -> SliceSettings:
        """These settings with ``batch_size`` 0 replaced by the device's :data:`AUTO_BATCH`."""
        if self.batch_size:
            return self
        return dataclasses.replace(self, batch_size=AUTO_BATCH.get(device_type, 1))

    def describe(self) -> dict[str, float | int | bool]:
        """The settings as plain values (for ``metrics.json`` and logs)."""
        return {"size": self.size, "overlap": self.overlap, "scale": self.scale, "full_image": self.full_image,
                "batch_size": self.batch_size, "merge_iou": self.merge.iou, "merge_ios": self.merge.ios}

    def windows(self, height: int, width: int) -> list[Tile]:
        """The windows covering a ``height x width`` image, row by row."""
        return tile_grid(height, width, self.size, overlap_pixels(self.size, self.overlap))


def slice_suffix(settings: SliceSettings | None) -> str:
    """``_slice400``, ``_slice400_o0.25_s0.96_full``: the slice options in an output folder's name."""
    if settings is None:
        return ""
    parts = [f"slice{settings.size}"]
    if settings.overlap != SliceSettings.overlap:
        parts.append(f"o{settings.overlap:g}")
    if settings.scale != 1.0:
        parts.append(f"s{settings.scale:g}")
    if settings.full_image:
        parts.append("full")
    return "".join(f"_{part}" for part in parts)


def prepare_windows(source: ImageSource, tiles: Sequence[Tile], settings: SliceSettings
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Read, resize and pad ``tiles``.

    Returns:
        ``(batch, factors)``: uint8 BGR ``[B, S, S, 3]`` (``S = settings.network_size``) and float64
        ``[B, 2]`` network pixels per image pixel along x and y of each window.
    """
    side = settings.network_size
    batch = np.zeros((len(tiles), side, side, 3), dtype=np.uint8)
    factors = np.empty((len(tiles), 2), dtype=np.float64)
    for i, tile in enumerate(tiles):
        pixels = source.read(tile)
        out_w = min(side, max(1, round(tile.width * settings.scale)))
        out_h = min(side, max(1, round(tile.height * settings.scale)))
        if (out_w, out_h) != (tile.width, tile.height):
            pixels = cv2.resize(pixels, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
        batch[i, :out_h, :out_w] = pixels
        factors[i] = (out_w / tile.width, out_h / tile.height)
    return batch, factors


def cut_flags(boxes: np.ndarray, tile: Tile, height: int, width: int, margin: float) -> np.ndarray:
    """bool ``[N]``: the box (image pixels) reaches within ``margin`` image pixels of an edge of ``tile``
    that lies inside the image (an image border cuts nothing)."""
    cut = np.zeros(boxes.shape[0], dtype=bool)
    if tile.x0 > 0:
        cut |= boxes[:, 0] <= tile.x0 + margin
    if tile.y0 > 0:
        cut |= boxes[:, 1] <= tile.y0 + margin
    if tile.x1 < width:
        cut |= boxes[:, 2] >= tile.x1 - margin
    if tile.y1 < height:
        cut |= boxes[:, 3] >= tile.y1 - margin
    return cut


def to_image_pixels(rows: np.ndarray, tile: Tile, factor: np.ndarray) -> np.ndarray:
    """Rows in a window's network pixels -> image pixels (divide by the window's resize, add its origin)."""
    rows = np.array(rows, dtype=np.float32).reshape(-1, NUM_DET_COLUMNS)
    rows[:, 0:BOX_COORDS:2] = rows[:, 0:BOX_COORDS:2] / factor[0] + tile.x0
    rows[:, 1:BOX_COORDS:2] = rows[:, 1:BOX_COORDS:2] / factor[1] + tile.y0
    return rows


@dataclass
class SliceStats:
    """What one sliced run did: windows, pixels and time (the progress bar's figures)."""

    windows: int = 0
    megapixels: float = 0.0
    seconds: float = 0.0

    @property
    def windows_per_second(self) -> float:
        """Windows run per second (0 before any)."""
        return self.windows / self.seconds if self.seconds > 0 else 0.0


def predict_sliced(
    source: ImageSource,
    predict_windows: WindowPredictor,
    settings: SliceSettings,
    *,
    predict_full: Callable[[], np.ndarray] | None = None,
    progress: bool = True,
    stats: SliceStats | None = None,
) -> np.ndarray:
    """Detect in every window of ``source`` and merge across the seams.

    Args:
        source: the image.
        predict_windows: runs one batch of windows (see :data:`WindowPredictor`).
        settings: the window layout and merge.
        predict_full: the whole-image pass (rows in image pixels), run when ``settings.full_image``.
        progress: show a progress bar (windows/s) for images of at least ``PROGRESS_MIN_WINDOWS`` windows.
        stats: filled with the windows, megapixels and seconds of this run.

    Returns:
        float32 ``[K, 6]`` ``[x1, y1, x2, y2, score, class]`` in image pixels, best first.
    """
    start = time.perf_counter()
    height, width = source.height, source.width
    tiles = settings.windows(height, width)
    rows: list[np.ndarray] = []
    cut: list[np.ndarray] = []
    with tqdm(total=len(tiles), desc="windows", unit="win", disable=not progress or len(tiles) < PROGRESS_MIN_WINDOWS,
              dynamic_ncols=True, leave=False) as bar:
        for chunk in batches(tiles, settings.batch_size or 1):
            batch, factors = prepare_windows(source, chunk, settings)
            for tile, factor, window_rows in zip(chunk, factors, predict_windows(batch), strict=True):
                mapped = to_image_pixels(window_rows, tile, factor)
                mapped = mapped[mapped[:, SCORE_COLUMN] >= settings.min_score]
                rows.append(mapped)
                cut.append(cut_flags(mapped, tile, height, width, settings.edge_margin / float(factor.min())))
            bar.update(len(chunk))
    if settings.full_image and predict_full is not None:
        full = np.asarray(predict_full(), dtype=np.float32).reshape(-1, NUM_DET_COLUMNS)
        full = full[full[:, SCORE_COLUMN] >= settings.min_score]
        rows.append(full)
        cut.append(np.zeros(full.shape[0], dtype=bool))
    merged = merge_window_detections(np.concatenate(rows), np.concatenate(cut), settings.merge,
                                     block=settings.size * BLOCKS_PER_SIDE)
    if stats is not None:
        stats.windows += len(tiles)
        stats.megapixels += height * width / 1e6
        stats.seconds += time.perf_counter() - start
    return merged
