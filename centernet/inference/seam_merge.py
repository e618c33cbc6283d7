"""Merging the detections of overlapping windows so that each object is reported once.

Sliced inference (:mod:`centernet.inference.slicing`) runs the model on overlapping windows; an object
inside an overlap is found by every window that holds it, and an object crossing a window's edge is found
*cut* (the box of its visible part) by one window and, where the overlap is wide enough, whole by its
neighbour. The merge keeps, class by class:

1. the whole boxes, through :func:`torchvision.ops.batched_nms` at ``iou`` with every whole box ranked
   above every cut one (a cut box is suppressed by the whole box of the same object, whatever their
   scores, so the box reported is that of the window that saw the object whole);
2. a cut box that survived step 1 but lies mostly inside a kept whole box (intersection over the cut box's
   own area ``>= ios``: a short cut box has a low IoU with the whole one) is dropped as well;
3. the remaining cut boxes (objects wider than the overlap, which no window saw whole) that overlap each
   other by ``ios`` are fused into their union, with the best score.

``torchvision.ops.batched_nms`` is the maintained NMS kernel the rest of the project uses; weighted box
fusion (the ``ensemble-boxes`` package) averages the coordinates of duplicates instead, which would mix
a cut box into a whole one, the opposite of what the seams need.

Large rasters yield hundreds of thousands of rows; NMS over all of them at once costs O(N^2), so
:func:`merge_window_detections` merges square blocks of the image (each with a halo as wide as the
largest box) and keeps from each block the rows whose centre lies in it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import batched_nms

from centernet.decode import BOX_COORDS, CLASS_COLUMN, NUM_DET_COLUMNS, SCORE_COLUMN

WHOLE_PRIORITY = 2.0  # added to the score of whole boxes: ranks every whole box above every cut one
BLOCK_ROWS = 20000  # above this many rows the merge runs block by block


@dataclass(frozen=True)
class SeamMergeSettings:
    """Thresholds of the seam merge.

    Attributes:
        iou: same-class boxes overlapping a kept one above this IoU are duplicates (step 1).
        ios: a cut box whose area lies inside another box by at least this share is the same object.
    """

    iou: float = 0.5
    ios: float = 0.5

    def __post_init__(self) -> None:
        for name in ("iou", "ios"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"slice merge {name} must be in (0, 1], got {value}")


def intersection_over_first(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``area(a & b) / area(a)`` for every ``a`` of ``first`` ``[N, 4]`` and ``b`` of ``second`` ``[M, 4]``.

    Returns:
        float64 ``[N, M]`` (0 where ``a`` has no area).
    """
    first = np.asarray(first, dtype=np.float64).reshape(-1, BOX_COORDS)
    second = np.asarray(second, dtype=np.float64).reshape(-1, BOX_COORDS)
    inter_w = np.minimum(first[:, None, 2], second[None, :, 2]) - np.maximum(first[:, None, 0], second[None, :, 0])
    inter_h = np.minimum(first[:, None, 3], second[None, :, 3]) - np.maximum(first[:, None, 1], second[None, :, 1])
    inter = inter_w.clip(0.0) * inter_h.clip(0.0)
    area = ((first[:, 2] - first[:, 0]).clip(0.0) * (first[:, 3] - first[:, 1]).clip(0.0))[:, None]
    return np.divide(inter, area, out=np.zeros_like(inter), where=area > 0)


def merge_block(rows: np.ndarray, cut: np.ndarray, settings: SeamMergeSettings) -> np.ndarray:
    """Steps 1-3 of the module docstring on one set of rows.

    Args:
        rows: float ``[N, 6]`` ``[x1, y1, x2, y2, score, class]`` in image pixels.
        cut: bool ``[N]``: the box touches an edge of its window that lies inside the image.
        settings: thresholds.

    Returns:
        float32 ``[K, 6]`` merged rows, best score first.
    """
    rows = np.asarray(rows, dtype=np.float32).reshape(-1, NUM_DET_COLUMNS)
    cut = np.asarray(cut, dtype=bool).reshape(-1)
    if rows.shape[0] == 0:
        return rows
    priority = rows[:, SCORE_COLUMN] + np.where(cut, 0.0, WHOLE_PRIORITY)
    keep = batched_nms(
        torch.from_numpy(rows[:, :BOX_COORDS].copy()), torch.from_numpy(priority.astype(np.float32)),
        torch.from_numpy(rows[:, CLASS_COLUMN].astype(np.int64)), settings.iou,
    ).numpy()
    rows, cut = rows[keep], cut[keep]
    whole, pieces = rows[~cut], rows[cut]
    if pieces.shape[0]:
        inside = intersection_over_first(pieces[:, :BOX_COORDS], whole[:, :BOX_COORDS]) >= settings.ios
        inside &= pieces[:, None, CLASS_COLUMN] == whole[None, :, CLASS_COLUMN]
        pieces = fuse_pieces(pieces[~inside.any(axis=1)], settings.ios)
    merged = np.concatenate([whole, pieces])
    return merged[np.argsort(-merged[:, SCORE_COLUMN], kind="stable")]


def fuse_pieces(pieces: np.ndarray, ios: float) -> np.ndarray:
    """Greedy fusion of cut boxes of one object: best first, each absorbs the same-class boxes that lie
    inside it or hold it by ``ios`` (either way round), taking their union; the score is the best one's."""
    pieces = pieces[np.argsort(-pieces[:, SCORE_COLUMN], kind="stable")]
    boxes = pieces[:, :BOX_COORDS]
    inside = intersection_over_first(boxes, boxes)
    same = (np.maximum(inside, inside.T) >= ios) & (pieces[:, None, CLASS_COLUMN] == pieces[None, :, CLASS_COLUMN])
    used = np.zeros(len(pieces), dtype=bool)
    fused: list[np.ndarray] = []
    for i in range(len(pieces)):
        if used[i]:
            continue
        group = same[i] & ~used  # the best remaining piece and every piece it overlaps by ios
        group[i] = True
        used |= group
        row = pieces[i].copy()
        row[:2] = boxes[group, :2].min(axis=0)
        row[2:BOX_COORDS] = boxes[group, 2:].max(axis=0)
        fused.append(row)
    return np.stack(fused) if fused else pieces[:0]


def merge_window_detections(
    rows: np.ndarray, cut: np.ndarray, settings: SeamMergeSettings, *, block: float, max_rows: int = BLOCK_ROWS
) -> np.ndarray:
    """:func:`merge_block` over all rows, or block by block when there are more than ``max_rows``.

    Blocks are squares of side ``block`` image pixels; each is merged together with the rows whose centre
    lies within a halo of the largest box's side around it, and keeps the merged rows whose centre lies in
    the block itself, so that every row is decided once, beside every row it could overlap.

    Returns:
        float32 ``[K, 6]`` merged rows, best score first.
    """
    rows = np.asarray(rows, dtype=np.float32).reshape(-1, NUM_DET_COLUMNS)
    cut = np.asarray(cut, dtype=bool).reshape(-1)
    if rows.shape[0] <= max_rows:
        return merge_block(rows, cut, settings)
    centre = (rows[:, 0:2] + rows[:, 2:4]) / 2
    halo = float(np.max(np.maximum(rows[:, 2] - rows[:, 0], rows[:, 3] - rows[:, 1])))
    cell = np.floor(centre / block).astype(np.int64)
    merged: list[np.ndarray] = []
    for cx, cy in np.unique(cell, axis=0):
        x0, y0 = cx * block, cy * block
        near = ((centre[:, 0] >= x0 - halo) & (centre[:, 0] < x0 + block + halo)
                & (centre[:, 1] >= y0 - halo) & (centre[:, 1] < y0 + block + halo))
        result = merge_block(rows[near], cut[near], settings)
        mid = (result[:, 0:2] + result[:, 2:4]) / 2
        home = np.all(np.floor(mid / block).astype(np.int64) == (cx, cy), axis=1)
        merged.append(result[home])
    out = np.concatenate(merged)
    return out[np.argsort(-out[:, SCORE_COLUMN], kind="stable")]
