"""CenterNet training transform: random crop/scale, flip, one affine warp, uint8 colour jitter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from centernet.data.transforms.color import (
    COLOR_JITTER_STRENGTH,
    PCA_LIGHTING_STD,
    apply_color_matrix,
    check_channel_order,
    sample_color_matrix,
    to_channel_order,
)
from centernet.data.transforms.geometry import (
    CROP_BORDER,
    DEFAULT_SCALE_CHOICES,
    SCALE_JITTER,
    SHIFT_CLIP_SIGMAS,
    SHIFT_JITTER,
    TransformedSample,
    check_boxes,
    check_image,
    check_input_size,
    compose_flip,
    crop_border,
    flip_boxes,
    warp_image,
)
from centernet.utils.affine import apply_affine_to_boxes, get_affine_transform

if TYPE_CHECKING:  # albumentations is slow to import; only configs that list transforms load it
    from centernet.data.transforms.albumentations_chain import AlbumentationsChain

#: Probability of the horizontal flip in the original.
FLIP_PROB = 0.5


class TrainTransform:
    """Sample one CenterNet training augmentation and apply it to an image and its boxes.

    Geometry (the original's ``ctdet`` train branch): start from ``c = (W/2, H/2)``, ``s = max(H, W)``.
    With ``random_crop`` ``s *= choice(scale_choices)`` and each centre coordinate is uniform in
    ``[b, dim - b)`` (``b`` from :func:`crop_border`); otherwise ``c += s * clip(N(0, cf), -2cf, 2cf)``
    and ``s *= clip(N(1, sf), 1 - sf, 1 + sf)``. A horizontal flip (probability ``flip_prob``) mirrors
    the source and sets ``c[0] = W - c[0] - 1``; it is folded into the single bilinear warp. Colour
    jitter and PCA lighting follow on the uint8 warp (see :mod:`centernet.data.transforms.color`).
    An optional albumentations chain runs first, on the loaded image and boxes (docs/augmentation.md);
    the warp stays the last geometric step. All randomness comes from the ``rng`` passed to
    :meth:`__call__` (the chain draws its seeds first, only when there is one).
    """

    def __init__(
        self,
        *,
        input_size: Sequence[int],
        scale_choices: Sequence[float] = DEFAULT_SCALE_CHOICES,
        random_crop: bool = True,
        scale_jitter: float = SCALE_JITTER,
        shift_jitter: float = SHIFT_JITTER,
        flip_prob: float = FLIP_PROB,
        color_jitter: bool = True,
        color_jitter_strength: float = COLOR_JITTER_STRENGTH,
        pca_lighting_std: float = PCA_LIGHTING_STD,
        channel_order: str = "rgb",
        albumentations: AlbumentationsChain | None = None,
    ) -> None:
        """Configure the transform.

        Args:
            input_size: ``(height, width)`` of the network input.
            scale_choices: crop-scale multipliers drawn uniformly in random-crop mode.
            random_crop: the original's random crop; ``False`` selects its scale/shift jitter mode.
            scale_jitter: ``sf`` of the jitter mode (``random_crop=False``).
            shift_jitter: ``cf`` of the jitter mode (``random_crop=False``).
            flip_prob: probability of the horizontal flip.
            color_jitter: apply brightness, contrast and saturation jitter.
            color_jitter_strength: ``v`` of each factor ``1 + U(-v, v)``.
            pca_lighting_std: std of the PCA lighting coefficients (0 disables lighting).
            channel_order: ``"rgb"`` or ``"bgr"``: channel order of the output image.
            albumentations: transforms applied to the loaded image and boxes before the warp (None: none).
        """
        self.input_size = check_input_size(input_size)
        self.albumentations = albumentations
        self.scale_choices = tuple(float(v) for v in scale_choices)
        if not self.scale_choices or min(self.scale_choices) <= 0:
            raise ValueError(f"scale_choices must be non-empty and positive, got {scale_choices!r}")
        if not 0.0 <= scale_jitter < 1.0:
            raise ValueError(f"scale_jitter must be in [0, 1), got {scale_jitter}")
        if shift_jitter < 0:
            raise ValueError(f"shift_jitter must be >= 0, got {shift_jitter}")
        if not 0.0 <= flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}")
        if not 0.0 <= color_jitter_strength < 1.0:
            raise ValueError(f"color_jitter_strength must be in [0, 1), got {color_jitter_strength}")
        if pca_lighting_std < 0:
            raise ValueError(f"pca_lighting_std must be >= 0, got {pca_lighting_std}")
        self.random_crop = bool(random_crop)
        self.scale_jitter = float(scale_jitter)
        self.shift_jitter = float(shift_jitter)
        self.flip_prob = float(flip_prob)
        self.color_jitter_strength = float(color_jitter_strength) if color_jitter else 0.0
        self.pca_lighting_std = float(pca_lighting_std)
        self.channel_order = check_channel_order(channel_order)

    def __repr__(self) -> str:
        """Readable summary of the settings."""
        return (
            f"{type(self).__name__}(input_size={self.input_size}, scale_choices={self.scale_choices}, "
            f"random_crop={self.random_crop}, flip_prob={self.flip_prob}, "
            f"color_jitter_strength={self.color_jitter_strength}, "
            f"pca_lighting_std={self.pca_lighting_std}, channel_order={self.channel_order!r}, "
            f"albumentations={self.albumentations!r})"
        )

    def sample_crop(self, height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """Draw the crop centre ``[2]`` float32 ``(cx, cy)`` and side ``s`` for a ``height x width`` image."""
        center = np.array([width / 2.0, height / 2.0], dtype=np.float32)
        scale = float(max(height, width))
        if self.random_crop:
            scale *= float(rng.choice(self.scale_choices))
            w_border = crop_border(CROP_BORDER, width)
            h_border = crop_border(CROP_BORDER, height)
            center[0] = rng.integers(low=w_border, high=width - w_border)
            center[1] = rng.integers(low=h_border, high=height - h_border)
        else:
            shift_limit = SHIFT_CLIP_SIGMAS * self.shift_jitter
            for axis in range(2):
                shift = np.clip(rng.standard_normal() * self.shift_jitter, -shift_limit, shift_limit)
                center[axis] += scale * shift
            sf = self.scale_jitter
            scale *= float(np.clip(rng.standard_normal() * sf + 1.0, 1.0 - sf, 1.0 + sf))
        return center, scale

    def __call__(self, image: np.ndarray, boxes: np.ndarray | None, rng: np.random.Generator) -> TransformedSample:
        """Augment one sample.

        Args:
            image: ``[H, W, 3]`` uint8 BGR image (as read by cv2).
            boxes: ``[N, 4]`` float32 ``[x1, y1, x2, y2]`` in image pixels (``N`` may be 0).
            rng: generator supplying every random draw.

        Returns:
            :class:`TransformedSample` with the ``[H_in, W_in, 3]`` uint8 input in ``channel_order``
            and the boxes mapped (not clipped) onto the input grid; with an albumentations chain only
            the boxes it kept, their input rows in ``kept``.
        """
        height, width = check_image(image)
        boxes = check_boxes(boxes)
        kept = None
        if self.albumentations is not None:
            image, boxes, kept = self.albumentations(image, boxes, rng)
            height, width = image.shape[:2]
        center, scale = self.sample_crop(height, width, rng)
        flipped = bool(rng.random() < self.flip_prob)
        warp_center = center.copy()  # in the coordinates of the (possibly flipped) source, as the original
        if flipped:
            warp_center[0] = width - warp_center[0] - 1
            boxes = flip_boxes(boxes, width)
        in_h, in_w = self.input_size
        matrix = get_affine_transform(warp_center, scale, (in_w, in_h))  # (flipped) source -> input
        image_matrix = compose_flip(matrix, width) if flipped else matrix  # original source -> input
        warped = warp_image(image, image_matrix, self.input_size)
        if self.color_jitter_strength > 0 or self.pca_lighting_std > 0:
            color = sample_color_matrix(
                warped, rng, jitter_strength=self.color_jitter_strength, lighting_std=self.pca_lighting_std
            )
            warped = apply_color_matrix(warped, color, self.channel_order)
        else:
            warped = to_channel_order(warped, self.channel_order)
        return TransformedSample(
            image=warped,
            boxes=apply_affine_to_boxes(boxes, matrix),
            center=center,
            scale=scale,
            flipped=flipped,
            matrix=image_matrix,
            kept=kept,
        )
