"""The original per-object target drawing: one float32 heatmap per sample, one Python call per object.

Written from the published ``ctdet`` semantics (``gaussian_radius``, ``gaussian2D``,
``draw_umich_gaussian``): numpy, float64 Gaussian stored into a float32 map, merged by ``max``.
"""

from __future__ import annotations

import math

import numpy as np

MIN_OVERLAP = 0.7


def gaussian_radius(height: float, width: float, min_overlap: float = MIN_OVERLAP) -> float:
    """The original (pre-fix CornerNet) radius: the smallest of three quadratic 'roots' ``(b + sqrt(d)) / 2``."""
    o = min_overlap
    b1 = height + width
    c1 = width * height * (1 - o) / (1 + o)
    r1 = (b1 + math.sqrt(b1**2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - o) * width * height
    r2 = (b2 + math.sqrt(b2**2 - 16 * c2)) / 2
    a3 = 4 * o
    b3 = -2 * o * (height + width)
    c3 = (o - 1) * width * height
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def gaussian_2d(radius: int) -> np.ndarray:
    """float64 ``[2r+1, 2r+1]`` Gaussian with sigma ``(2r+1)/6``, values below ``eps * max`` zeroed."""
    sigma = (2 * radius + 1) / 6
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    g = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    g[g < np.finfo(g.dtype).eps * g.max()] = 0
    return g


def draw_gaussian(heatmap: np.ndarray, center: tuple[int, int], radius: int) -> None:
    """Merge a Gaussian peak at integer ``center = (x, y)`` into ``heatmap [H, W]`` by max (in place)."""
    g = gaussian_2d(radius)
    x, y = center
    height, width = heatmap.shape
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    region = heatmap[y - top : y + bottom, x - left : x + right]
    patch = g[radius - top : radius + bottom, radius - left : radius + right]
    if min(patch.shape) > 0 and min(region.shape) > 0:
        np.maximum(region, patch, out=region)


def sample_targets(
    boxes: np.ndarray, labels: np.ndarray, num_classes: int, output_size: int, max_objects: int
) -> dict[str, np.ndarray]:
    """Targets of one sample, the original way (boxes already mapped onto the output grid).

    Args:
        boxes: float32 ``[N, 4]`` xyxy on the output grid (not clipped).
        labels: int ``[N]`` class ids.
        num_classes: heatmap channels.
        output_size: side of the square output grid.
        max_objects: slots of the size/offset/index/mask arrays.

    Returns:
        ``hm`` float32 [C, H, W], ``wh`` / ``reg`` float32 [max_objects, 2], ``ind`` int64 and
        ``reg_mask`` uint8 [max_objects].
    """
    hm = np.zeros((num_classes, output_size, output_size), dtype=np.float32)
    wh = np.zeros((max_objects, 2), dtype=np.float32)
    reg = np.zeros((max_objects, 2), dtype=np.float32)
    ind = np.zeros(max_objects, dtype=np.int64)
    reg_mask = np.zeros(max_objects, dtype=np.uint8)
    for k in range(min(len(boxes), max_objects)):
        bbox = boxes[k].copy()
        bbox[[0, 2]] = np.clip(bbox[[0, 2]], 0, output_size - 1)
        bbox[[1, 3]] = np.clip(bbox[[1, 3]], 0, output_size - 1)
        h, w = bbox[3] - bbox[1], bbox[2] - bbox[0]
        if h > 0 and w > 0:
            radius = max(0, int(gaussian_radius(math.ceil(h), math.ceil(w))))
            ct = np.array([(bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2], dtype=np.float32)
            ct_int = ct.astype(np.int32)
            draw_gaussian(hm[int(labels[k])], (int(ct_int[0]), int(ct_int[1])), radius)
            wh[k] = 1.0 * w, 1.0 * h
            ind[k] = ct_int[1] * output_size + ct_int[0]
            reg[k] = ct - ct_int
            reg_mask[k] = 1
    return {"hm": hm, "wh": wh, "reg": reg, "ind": ind, "reg_mask": reg_mask}


def batch_targets(
    boxes: np.ndarray, labels: np.ndarray, valid: np.ndarray, num_classes: int, output_size: int
) -> dict[str, np.ndarray]:
    """Per-sample targets of a padded batch, stacked like the loader's collate would.

    Args:
        boxes: float32 ``[B, M, 4]`` xyxy on the output grid.
        labels: int ``[B, M]``.
        valid: bool ``[B, M]``.
        num_classes, output_size: as :func:`sample_targets`.

    Returns:
        The :func:`sample_targets` arrays with a leading batch dimension.
    """
    slots = boxes.shape[1]
    per_sample = [
        sample_targets(b[v], lab[v], num_classes, output_size, slots) for b, lab, v in zip(boxes, labels, valid)
    ]
    return {key: np.stack([s[key] for s in per_sample]) for key in per_sample[0]}
