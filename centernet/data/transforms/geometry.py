"""Geometry shared by the train and val transforms: input checks, crop border, flip and the warp.

Boxes are ``[N, 4]`` float32 ``[x1, y1, x2, y2]`` in pixel-index coordinates (a box from column
``x1`` to column ``x2``), the convention of the original CenterNet, whose horizontal flip is
``x' = W - x - 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from centernet.decode import BOX_COORDS

#: Half-size (pixels) of the band along each image edge where the random-crop centre is not drawn.
CROP_BORDER = 128
#: Crop-scale multipliers of the original random crop (``np.arange(0.6, 1.4, 0.1)``).
DEFAULT_SCALE_CHOICES: tuple[float, ...] = (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3)
#: Scale jitter ``sf`` of the original's non-random-crop mode: ``s *= clip(N(1, sf), 1 - sf, 1 + sf)``.
SCALE_JITTER = 0.4
#: Centre shift ``cf`` of that mode: ``c += s * clip(N(0, cf), -2 cf, 2 cf)``.
SHIFT_JITTER = 0.1
#: The shift is clipped at this many ``cf`` (the original's ``clip(randn * cf, -2 * cf, 2 * cf)``).
SHIFT_CLIP_SIGMAS = 2.0

_NUM_CHANNELS = 3


@dataclass
class TransformedSample:
    """One image and its boxes after a transform.

    Attributes:
        image: ``[H_in, W_in, 3]`` uint8 network input, channels in the transform's ``channel_order``.
        boxes: ``[N, 4]`` float32 ``[x1, y1, x2, y2]`` on the input grid, mapped by the same affine as
            the pixels and NOT clipped (the target renderer clips on the output grid).
        center: ``[2]`` float32 crop centre ``(cx, cy)`` in ORIGINAL-image pixels. When ``flipped`` the
            warp is that of the mirrored image around ``(W - 1 - cx, cy)`` (the original's
            ``c[0] = W - c[0] - 1``): the same region, mirrored.
        scale: side of the square crop in source pixels.
        flipped: whether the source was mirrored horizontally before the warp.
        matrix: ``[2, 3]`` float64 affine from the ORIGINAL (un-flipped) image pixels to the input grid,
            flip included; invert it to map input-grid points back to the image.
        kept: ``int64 [N]`` the input box each row of ``boxes`` comes from, when a transform may drop
            boxes (an albumentations chain); None when ``boxes`` has one row per input box, in order.
            With an albumentations chain, ``center``, ``scale`` and ``matrix`` refer to the chain's
            output image, not the loaded one.
    """

    image: np.ndarray
    boxes: np.ndarray
    center: np.ndarray
    scale: float
    flipped: bool
    matrix: np.ndarray
    kept: np.ndarray | None = None


def check_input_size(input_size: Sequence[int]) -> tuple[int, int]:
    """Validate ``input_size`` = ``(height, width)`` and return it as two ints."""
    if len(input_size) != 2 or any(int(v) != v or v <= 0 for v in input_size):
        raise ValueError(f"input_size must be two positive ints (height, width), got {input_size!r}")
    return int(input_size[0]), int(input_size[1])


def check_image(image: np.ndarray) -> tuple[int, int]:
    """Validate a ``[H, W, 3]`` uint8 image with ``H, W >= 1`` and return ``(H, W)``."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != _NUM_CHANNELS:
        shape = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"image must be a numpy array [H, W, 3], got shape {shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (as read by cv2), got dtype {image.dtype}")
    height, width = image.shape[:2]
    if height < 1 or width < 1:
        raise ValueError(f"image must be non-empty, got shape {image.shape}")
    return height, width


def check_boxes(boxes: np.ndarray | None) -> np.ndarray:
    """Validate boxes and return them as a new ``[N, 4]`` float32 array (``None`` -> ``[0, 4]``)."""
    if boxes is None:
        return np.zeros((0, BOX_COORDS), dtype=np.float32)
    arr = np.asarray(boxes, dtype=np.float32)
    if arr.size == 0:
        return np.zeros((0, BOX_COORDS), dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != BOX_COORDS:
        raise ValueError(f"boxes must be [N, 4] xyxy, got shape {arr.shape}")
    return arr


def crop_border(border: int, size: int) -> int:
    """Border of the original random crop: ``border`` halved until ``size - b > b``.

    Args:
        border: initial border in pixels (:data:`CROP_BORDER`).
        size: image width or height in pixels, ``>= 1``.

    Returns:
        ``b`` such that the crop centre is drawn from ``[b, size - b)``.
    """
    if size < 1:
        raise ValueError(f"crop_border needs size >= 1, got {size}")
    divisor = 1
    while size - border // divisor <= border // divisor:
        divisor *= 2
    return border // divisor


def flip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """Mirror ``[N, 4]`` xyxy boxes in an image ``width`` pixels wide: ``x' = W - x - 1``, x1/x2 swapped."""
    flipped = boxes.copy()
    flipped[:, 0] = width - boxes[:, 2] - 1
    flipped[:, 2] = width - boxes[:, 0] - 1
    return flipped


def compose_flip(matrix: np.ndarray, width: int) -> np.ndarray:
    """Return ``matrix @ F`` where ``F`` mirrors an image ``width`` pixels wide (``x -> W - 1 - x``).

    Warping the original image with the result equals flipping it first and warping with ``matrix``,
    without materialising the flipped copy.
    """
    composed = matrix.astype(np.float64, copy=True)
    composed[:, 2] = matrix[:, 0] * (width - 1) + matrix[:, 2]
    composed[:, 0] = -matrix[:, 0]
    return composed


def warp_image(image: np.ndarray, matrix: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """One bilinear ``cv2.warpAffine`` of a uint8 image onto ``input_size`` = ``(height, width)``.

    Pixels mapped from outside the source are 0 (the original's constant border).
    """
    height, width = input_size
    return cv2.warpAffine(
        image,
        matrix,
        (width, height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
