"""Record types shared by the datasets, the transforms and the collate function.

A dataset yields :class:`Sample` dicts; ``load_raw`` returns :class:`RawSample` dicts. Transforms are
any callable matching :class:`SampleTransform`: they receive the raw image and boxes together with a
generator seeded per (seed, epoch, index) and return an object with the :class:`TransformOutput`
attributes. These are typing aids only (``TypedDict`` / ``Protocol``): nothing is checked at run time.
"""

from __future__ import annotations

from typing import NotRequired, Protocol, TypedDict

import numpy as np
import torch


class RawSample(TypedDict):
    """One image and its annotations as stored, before any transform.

    Attributes:
        image: ``uint8 [H, W, 3]`` BGR pixels.
        boxes: ``float32 [N, 4]`` ``[x1, y1, x2, y2]`` in image pixels (objects and ignore regions).
        labels: ``int64 [N]`` contiguous class labels in ``[0, C)``.
        ignore: ``bool [N]``; True for ignore regions (COCO ``iscrowd``, VOC ``difficult``).
        image_id: the dataset's image id.
        file_name: the image's file name as written in the annotation file.
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray
    image_id: int
    file_name: str


class SampleMeta(TypedDict):
    """What the decoder and the evaluator need to map detections back to the original image.

    Attributes:
        image_id: the dataset's image id.
        file_name: the image's file name as written in the annotation file.
        orig_size: ``(height, width)`` of the original image.
        center: ``(cx, cy)`` of the crop in original-image pixels.
        scale: side of the square crop in original-image pixels.
        flipped: whether the input was flipped horizontally before the warp.
    """

    image_id: int
    file_name: str
    orig_size: tuple[int, int]
    center: tuple[float, float]
    scale: float
    flipped: bool
    skipped: NotRequired[list[str]]  # on_bad_sample=skip: the unreadable images replaced by this one


class Sample(TypedDict):
    """One training / evaluation sample, as returned by ``Dataset.__getitem__``.

    Attributes:
        image: ``torch.uint8 [3, H_in, W_in]`` pixels on the input grid, in the transform's channel
            order (BGR without a transform).
        boxes: ``torch.float32 [N, 4]`` ``[x1, y1, x2, y2]`` on the input grid.
        labels: ``torch.int64 [N]`` contiguous class labels.
        ignore: ``torch.bool [N]``; True for ignore regions.
        meta: see :class:`SampleMeta`.
    """

    image: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    ignore: torch.Tensor
    meta: SampleMeta


class TransformOutput(Protocol):
    """What a :class:`SampleTransform` returns.

    Attributes:
        image: ``uint8 [H_in, W_in, 3]`` pixels on the input grid.
        boxes: ``float32 [N, 4]`` ``[x1, y1, x2, y2]`` on the input grid, one row per input box
            (unless ``kept`` says otherwise).
        center: ``[2]`` ``(cx, cy)`` of the crop in original-image pixels.
        scale: side of the square crop in original-image pixels.
        flipped: whether the image was flipped horizontally.
        kept: optional ``int64 [K]``: when present and not None, the transform dropped boxes and
            ``boxes[k]`` is input box ``kept[k]`` (labels and ignore flags are taken the same way).
    """

    image: np.ndarray
    boxes: np.ndarray
    center: np.ndarray
    scale: float
    flipped: bool


class SampleTransform(Protocol):
    """A joint image + box transform (e.g. ``TrainTransform`` / ``ValTransform``)."""

    def __call__(
        self, image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator
    ) -> TransformOutput:
        """Transform one image and its boxes.

        Args:
            image: ``uint8 [H, W, 3]`` BGR pixels.
            boxes: ``float32 [N, 4]`` ``[x1, y1, x2, y2]`` in image pixels.
            rng: the generator to draw every random choice from.

        Returns:
            The transformed sample (see :class:`TransformOutput`).
        """
        ...
