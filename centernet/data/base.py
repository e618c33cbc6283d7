"""What every detection dataset shares: image loading, per-sample generators and sample assembly.

A concrete dataset (``CocoDetection``, ``VOCDetection``) subclasses :class:`DetectionDataset`, sets
``image_ids``, ``class_names``, ``label_to_category_id`` and ``category_id_to_label``, and implements
:meth:`DetectionDataset.load_raw` (usually with :meth:`DetectionDataset._load_image`). Indexing,
seeding, the transform call and the conversion to a :class:`Sample` live here, once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from centernet.data.sample import RawSample, Sample, SampleMeta, SampleTransform

logger = logging.getLogger(__name__)

BOX_LEN = 4  # [x1, y1, x2, y2]
BadSamplePolicy = Literal["error", "skip"]
BAD_SAMPLE_POLICIES = ("error", "skip")
IMAGE_ERRORS = (FileNotFoundError, ValueError)  # what read_image raises for a missing / undecodable file


class BadSampleError(ValueError):
    """A record of a dataset that cannot be used (bad box, unknown category, unreadable image)."""


def read_image(path: Path, image_id: int) -> np.ndarray:
    """Read one image as BGR uint8 with one-line errors naming the file.

    Args:
        path: the image file.
        image_id: the dataset's id of the image (named in the errors).

    Returns:
        ``uint8 [H, W, 3]`` BGR pixels.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file cannot be decoded.
    """
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path} (image id {image_id})")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"could not decode image file {path} (image id {image_id}): corrupt or unsupported")
    return image


def check_unique_classes(classes: Sequence[str]) -> None:
    """Raise ValueError naming the class names listed more than once in ``classes``."""
    duplicated = sorted({n for n in classes if list(classes).count(n) > 1})
    if duplicated:
        raise ValueError(f"classes lists {duplicated} more than once")


class DetectionDataset(Dataset):
    """Base of the detection datasets: index checks, per-sample generators, ``__getitem__``.

    Subclasses set these attributes in their constructor:

    Attributes:
        image_ids: ``int`` image ids in dataset order.
        class_names: ``[C]`` class names, index = contiguous label.
        label_to_category_id: ``[C]`` category id of each contiguous label.
        category_id_to_label: inverse of ``label_to_category_id``.
        transform: the joint image/box transform, or None.
        seed: base seed of the per-sample generators.
        epoch: current epoch (see :meth:`set_epoch`).
    """

    image_ids: list[int]
    class_names: list[str]
    label_to_category_id: list[int]
    category_id_to_label: dict[int, int]

    def __init__(
        self,
        *,
        transform: SampleTransform | None,
        seed: int,
        source: str,
        on_bad_sample: BadSamplePolicy = "error",
    ) -> None:
        """Store the settings shared by all datasets.

        Args:
            transform: called as ``transform(image, boxes, rng)`` in ``__getitem__``; None keeps the
                raw image.
            seed: base seed of the per-sample generators.
            source: what the dataset was read from (named in errors and warnings).
            on_bad_sample: ``error`` | ``skip`` (see :attr:`on_bad_sample`).
        """
        if on_bad_sample not in BAD_SAMPLE_POLICIES:
            raise ValueError(f"on_bad_sample must be one of {list(BAD_SAMPLE_POLICIES)}, got {on_bad_sample!r}")
        self.on_bad_sample: BadSamplePolicy = on_bad_sample
        self.bad_samples: list[str] = []
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0
        self._source = source
        self._size_warned = False

    @property
    def num_classes(self) -> int:
        """Number of contiguous labels ``C``."""
        return len(self.class_names)

    def __len__(self) -> int:
        """Number of images (with or without annotations)."""
        return len(self.image_ids)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch mixed into the per-sample generator seed."""
        self.epoch = int(epoch)

    def _check_index(self, index: int) -> int:
        """Return ``index`` made non-negative; raise IndexError when out of range."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} images of {self._source}")
        return index % n

    def sample_rng(self, index: int, epoch: int | None = None) -> np.random.Generator:
        """Return the generator used for sample ``index`` in ``epoch`` (default: the current epoch)."""
        epoch = self.epoch if epoch is None else int(epoch)
        return np.random.default_rng([self.seed, epoch, self._check_index(index)])

    def _load_image(
        self, path: Path, image_id: int, expected_size: tuple[int | None, int | None], described_by: str
    ) -> np.ndarray:
        """Read an image and warn once when its size differs from the annotated ``(height, width)``.

        Args:
            path: the image file.
            image_id: the dataset's id of the image.
            expected_size: ``(height, width)`` from the annotations; None entries skip the check.
            described_by: the annotation file that states the size (named in the warning).

        Returns:
            ``uint8 [H, W, 3]`` BGR pixels.
        """
        image = read_image(path, image_id)
        if self._size_warned or None in expected_size or tuple(image.shape[:2]) == expected_size:
            return image
        self._size_warned = True
        logger.warning(
            "%s is %dx%d (h x w) but %s says %sx%s; boxes may not match (warning once)",
            path, image.shape[0], image.shape[1], described_by, *expected_size,
        )
        return image

    def image_names(self, index: int) -> tuple[str, ...]:
        """The names a detections file may use for image ``index`` instead of its integer id (subclasses:
        the annotated ``file_name``, its last part, and for VOC the image id string such as ``000001``)."""
        return ()

    def load_raw(self, index: int) -> RawSample:
        """Load one image and its annotations without any transform (implemented by subclasses)."""
        raise NotImplementedError(f"{type(self).__name__} must implement load_raw")

    def image_targets(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(boxes float32 [N, 4] xyxy, labels int64 [N], ignore bool [N])`` of one image, as ``load_raw``
        gives them but without reading the image (implemented by subclasses)."""
        raise NotImplementedError(f"{type(self).__name__} must implement image_targets")

    def report_bad_sample(self, error: Exception) -> None:
        """Raise ``error`` (``on_bad_sample: error``) or record it and warn (``skip``)."""
        if self.on_bad_sample == "error":
            raise error
        self.bad_samples.append(str(error))
        logger.warning("skipping bad sample: %s", error)

    def _load_raw_or_next(self, index: int) -> tuple[RawSample, list[str]]:
        """``load_raw(index)``; with ``on_bad_sample: skip`` an unreadable image is replaced by the next
        readable one (``index + 1``, ``index + 2``, ... wrapping around).

        Returns:
            The raw sample and the one-line messages of the images skipped on the way.

        Raises:
            FileNotFoundError, ValueError: the image is unreadable (``error``), or none is (``skip``).
        """
        skipped: list[str] = []
        for offset in range(len(self)):
            try:
                return self.load_raw((index + offset) % len(self)), skipped
            except IMAGE_ERRORS as error:
                self.report_bad_sample(error)
                skipped.append(str(error))
        raise ValueError(f"no readable image in {self._source} ({len(skipped)} tried)")

    def __getitem__(self, index: int | tuple[int, int]) -> Sample:
        """Load, transform and tensorise one sample.

        Args:
            index: position in ``image_ids``, or ``(epoch, index)`` to override the current epoch (lets
                a sampler drive the epoch when workers are persistent and ``set_epoch`` cannot reach them).

        Returns:
            ``Sample``: image ``torch.uint8 [3, H_in, W_in]`` (BGR unless the transform changes the
            channel order), boxes ``float32 [N, 4]`` xyxy on the input
            grid, labels ``int64 [N]``, ignore ``bool [N]``, and ``meta`` (image_id, file_name,
            orig_size ``(h, w)``, center ``(cx, cy)``, scale, flipped).
        """
        epoch = None
        if isinstance(index, tuple):
            epoch, index = index
        index = self._check_index(int(index))
        raw, skipped = self._load_raw_or_next(index)
        index = (index + len(skipped)) % len(self)  # the sample actually loaded
        image, boxes, labels, ignore = raw["image"], raw["boxes"], raw["labels"], raw["ignore"]
        height, width = image.shape[:2]
        center, scale, flipped = (width / 2.0, height / 2.0), float(max(height, width)), False
        if self.transform is not None:
            out = self.transform(image, boxes, self.sample_rng(index, epoch))
            image = out.image
            boxes = np.asarray(out.boxes, dtype=np.float32).reshape(-1, BOX_LEN)
            kept = getattr(out, "kept", None)
            if kept is not None:  # the transform dropped boxes: labels and ignore flags follow their box
                kept = np.asarray(kept, dtype=np.int64).reshape(-1)
                labels, ignore = labels[kept], ignore[kept]
            if len(boxes) != len(labels):
                raise ValueError(
                    f"transform {type(self.transform).__name__} returned {len(boxes)} boxes for "
                    f"{len(labels)} input boxes (image id {raw['image_id']})"
                )
            center = (float(out.center[0]), float(out.center[1]))
            scale, flipped = float(out.scale), bool(out.flipped)
        meta = SampleMeta(
            image_id=raw["image_id"],
            file_name=raw["file_name"],
            orig_size=(int(height), int(width)),
            center=center,
            scale=scale,
            flipped=flipped,
        )
        if skipped:
            meta["skipped"] = skipped
        return Sample(
            image=torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous(),
            boxes=torch.from_numpy(boxes),
            labels=torch.from_numpy(np.ascontiguousarray(labels)),
            ignore=torch.from_numpy(np.ascontiguousarray(ignore)),
            meta=meta,
        )
