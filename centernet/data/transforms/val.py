"""CenterNet evaluation transform: the whole image, aspect kept, zero-padded, one affine warp."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from centernet.data.transforms.color import check_channel_order, to_channel_order
from centernet.data.transforms.geometry import (
    TransformedSample,
    check_boxes,
    check_image,
    check_input_size,
    warp_image,
)
from centernet.utils.affine import apply_affine_to_boxes, get_affine_transform


class ValTransform:
    """Fit the whole image into the input: ``c = (W/2, H/2)``, ``s = max(H, W)``, padding 0."""

    def __init__(self, *, input_size: Sequence[int], channel_order: str = "rgb") -> None:
        """Configure the transform.

        Args:
            input_size: ``(height, width)`` of the network input.
            channel_order: ``"rgb"`` or ``"bgr"``: channel order of the output image.
        """
        self.input_size = check_input_size(input_size)
        self.channel_order = check_channel_order(channel_order)

    def __repr__(self) -> str:
        """Readable summary of the settings."""
        return f"{type(self).__name__}(input_size={self.input_size}, channel_order={self.channel_order!r})"

    def __call__(
        self,
        image: np.ndarray,
        boxes: np.ndarray | None = None,
        rng: np.random.Generator | None = None,
    ) -> TransformedSample:
        """Warp one image (and its boxes) onto the input grid.

        Args:
            image: ``[H, W, 3]`` uint8 BGR image (as read by cv2).
            boxes: ``[N, 4]`` float32 ``[x1, y1, x2, y2]`` in image pixels, or ``None`` (-> ``[0, 4]``).
            rng: unused; accepted so that train and val transforms share one call signature.

        Returns:
            :class:`TransformedSample` with ``flipped=False``.
        """
        height, width = check_image(image)
        boxes = check_boxes(boxes)
        center = np.array([width / 2.0, height / 2.0], dtype=np.float32)
        scale = float(max(height, width))
        in_h, in_w = self.input_size
        matrix = get_affine_transform(center, scale, (in_w, in_h))
        warped = to_channel_order(warp_image(image, matrix, self.input_size), self.channel_order)
        return TransformedSample(
            image=warped,
            boxes=apply_affine_to_boxes(boxes, matrix),
            center=center,
            scale=scale,
            flipped=False,
            matrix=matrix,
        )
