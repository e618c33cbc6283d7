"""CenterNet image/box transforms on uint8 images (sampled once, applied to pixels and boxes)."""

from centernet.data.transforms.color import (
    CHANNEL_ORDERS,
    COLOR_JITTER_STRENGTH,
    IMAGENET_PCA_EIGENVALUES,
    IMAGENET_PCA_EIGENVECTORS,
    PCA_LIGHTING_STD,
    apply_color_matrix,
    sample_color_matrix,
)
from centernet.data.transforms.geometry import (
    CROP_BORDER,
    DEFAULT_SCALE_CHOICES,
    SCALE_JITTER,
    SHIFT_JITTER,
    TransformedSample,
    crop_border,
    flip_boxes,
)
from centernet.data.transforms.train import FLIP_PROB, TrainTransform
from centernet.data.transforms.val import ValTransform

__all__ = [
    "CHANNEL_ORDERS",
    "COLOR_JITTER_STRENGTH",
    "CROP_BORDER",
    "DEFAULT_SCALE_CHOICES",
    "FLIP_PROB",
    "IMAGENET_PCA_EIGENVALUES",
    "IMAGENET_PCA_EIGENVECTORS",
    "PCA_LIGHTING_STD",
    "SCALE_JITTER",
    "SHIFT_JITTER",
    "TrainTransform",
    "TransformedSample",
    "ValTransform",
    "apply_color_matrix",
    "crop_border",
    "flip_boxes",
    "sample_color_matrix",
]
