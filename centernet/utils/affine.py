"""The CenterNet crop/scale affine transform and its inverse.

CenterNet describes every crop by a centre ``c = (cx, cy)`` and a square side ``s`` (pixels of the
source image). The crop is mapped isotropically onto an output of ``(width, height)`` pixels: ``c``
lands on the output centre and a length of ``s`` source pixels becomes ``width`` output pixels.
The matrix is built exactly as the original does (three float32 point pairs solved by
``cv2.getAffineTransform``) so that training targets and decoded boxes agree with it bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Point completing a right angle at ``b`` for the triangle ``a, b, ?`` (float32)."""
    direction = a - b
    return b + np.array([-direction[1], direction[0]], dtype=np.float32)


def get_affine_transform(
    center: Sequence[float] | np.ndarray,
    scale: float,
    output_size: Sequence[int],
    *,
    inverse: bool = False,
) -> np.ndarray:
    """Return the 2x3 matrix mapping the square crop ``(center, scale)`` onto ``output_size``.

    Args:
        center: ``(cx, cy)`` of the crop in source pixels.
        scale: side of the square crop in source pixels.
        output_size: ``(width, height)`` of the destination.
        inverse: return the matrix from the destination back to the source instead.

    Returns:
        float64 array ``[2, 3]`` such that ``[x', y'] = M @ [x, y, 1]``.
    """
    dst_w, dst_h = float(output_size[0]), float(output_size[1])
    c = np.asarray(center, dtype=np.float32)
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0] = c
    src[1] = c + np.array([0.0, float(scale) * -0.5], dtype=np.float32)
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = np.array([dst_w * 0.5, dst_h * 0.5], dtype=np.float32) + np.array([0.0, dst_w * -0.5], dtype=np.float32)
    src[2] = _third_point(src[0], src[1])
    dst[2] = _third_point(dst[0], dst[1])
    if inverse:
        return cv2.getAffineTransform(dst, src)
    return cv2.getAffineTransform(src, dst)


def apply_affine_to_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Map points through a 2x3 affine matrix.

    Args:
        points: ``[N, 2]`` array of ``(x, y)``.
        matrix: ``[2, 3]`` affine matrix.

    Returns:
        ``[N, 2]`` float32 array of mapped points (computed in float64, as the original does).
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    mapped = pts @ matrix[:, :2].T + matrix[:, 2]
    return mapped.astype(np.float32)


def apply_affine_to_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Map axis-aligned boxes through a rotation-free affine matrix by their two corners.

    Args:
        boxes: ``[N, 4]`` array of ``[x1, y1, x2, y2]``.
        matrix: ``[2, 3]`` affine matrix without rotation (as built by :func:`get_affine_transform`).

    Returns:
        ``[N, 4]`` float32 array of mapped ``[x1, y1, x2, y2]``.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    corners = apply_affine_to_points(boxes.reshape(-1, 2), matrix)  # [2N, 2]
    return corners.reshape(-1, 4)
