"""The original CenterNet training sample pipeline, per sample in float32 numpy (the loader baseline).

One sample: ``cv2.imread`` → random crop/scale and flip → one affine warp → ``/255`` float32 →
colour jitter (brightness, contrast, saturation in random order) and PCA lighting in float32 numpy →
mean/std normalisation → HWC→CHW, plus the per-sample ``80 x 128 x 128`` float32 heatmap and the
size/offset/index/mask arrays drawn object by object (:mod:`benchmarks.reference.targets`). Batches
are stacked by ``default_collate``, as the original loader does.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools.coco import COCO
from torch.utils.data import default_collate

from benchmarks.reference.targets import sample_targets
from centernet.data.transforms import (
    COLOR_JITTER_STRENGTH,
    CROP_BORDER,
    DEFAULT_SCALE_CHOICES,
    FLIP_PROB,
    IMAGENET_PCA_EIGENVALUES,
    IMAGENET_PCA_EIGENVECTORS,
    PCA_LIGHTING_STD,
    crop_border,
)
from centernet.utils.affine import apply_affine_to_points, get_affine_transform

# The original's COCO statistics, BGR order, as fractions of 255.
COCO_MEAN_BGR = np.array([0.40789654, 0.44719302, 0.47026115], dtype=np.float32).reshape(1, 1, 3)
COCO_STD_BGR = np.array([0.28863828, 0.27408164, 0.27809835], dtype=np.float32).reshape(1, 1, 3)
MAX_OBJECTS = 128
DOWN_RATIO = 4


def _brightness(rng: np.random.RandomState, image: np.ndarray, gray: np.ndarray, gray_mean: float) -> None:
    image *= 1.0 + rng.uniform(-COLOR_JITTER_STRENGTH, COLOR_JITTER_STRENGTH)


def _contrast(rng: np.random.RandomState, image: np.ndarray, gray: np.ndarray, gray_mean: float) -> None:
    alpha = 1.0 + rng.uniform(-COLOR_JITTER_STRENGTH, COLOR_JITTER_STRENGTH)
    image *= alpha
    image += (1 - alpha) * gray_mean


def _saturation(rng: np.random.RandomState, image: np.ndarray, gray: np.ndarray, gray_mean: float) -> None:
    alpha = 1.0 + rng.uniform(-COLOR_JITTER_STRENGTH, COLOR_JITTER_STRENGTH)
    image *= alpha
    image += (1 - alpha) * gray[:, :, None]


_COLOR_OPS = (_brightness, _contrast, _saturation)


def color_aug(rng: np.random.RandomState, image: np.ndarray) -> None:
    """The original float32 colour augmentation, in place on a ``/255`` BGR image."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    gray_mean = float(gray.mean())
    for op_index in rng.permutation(len(_COLOR_OPS)):
        _COLOR_OPS[op_index](rng, image, gray, gray_mean)
    alpha = rng.normal(scale=PCA_LIGHTING_STD, size=(3,))
    image += np.dot(IMAGENET_PCA_EIGENVECTORS, IMAGENET_PCA_EIGENVALUES * alpha)


class ReferenceCtdetDataset:
    """The original ``ctdet`` training dataset over a COCO annotation file (random crop mode)."""

    def __init__(self, ann_file: Path, img_dir: Path, *, input_size: int, seed: int = 0) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO(str(ann_file))
        self.img_dir = img_dir
        self.image_ids = sorted(self.coco.getImgIds())
        self.cat_ids = {cat_id: label for label, cat_id in enumerate(sorted(self.coco.getCatIds()))}
        self.input_size = input_size
        self.rng = np.random.RandomState(seed)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        img_id = self.image_ids[index]
        file_name = self.coco.loadImgs(ids=[img_id])[0]["file_name"]
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=[img_id]))
        img = cv2.imread(str(self.img_dir / file_name))
        if img is None:
            raise FileNotFoundError(f"cannot read {self.img_dir / file_name}")
        height, width = img.shape[:2]
        c = np.array([width / 2.0, height / 2.0], dtype=np.float32)
        s = max(height, width) * float(self.rng.choice(DEFAULT_SCALE_CHOICES))
        w_border, h_border = crop_border(CROP_BORDER, width), crop_border(CROP_BORDER, height)
        c[0] = self.rng.randint(low=w_border, high=width - w_border)
        c[1] = self.rng.randint(low=h_border, high=height - h_border)
        flipped = self.rng.random_sample() < FLIP_PROB
        if flipped:
            img = img[:, ::-1, :]
            c[0] = width - c[0] - 1
        size = self.input_size
        trans_input = get_affine_transform(c, s, (size, size))
        inp = cv2.warpAffine(img, trans_input, (size, size), flags=cv2.INTER_LINEAR)
        inp = inp.astype(np.float32) / 255.0
        color_aug(self.rng, inp)
        inp = (inp - COCO_MEAN_BGR) / COCO_STD_BGR
        inp = inp.transpose(2, 0, 1)

        output = size // DOWN_RATIO
        trans_output = get_affine_transform(c, s, (output, output))
        boxes = np.zeros((len(anns), 4), dtype=np.float32)
        labels = np.zeros(len(anns), dtype=np.int64)
        for k, ann in enumerate(anns):
            x, y, w, h = ann["bbox"]
            bbox = np.array([x, y, x + w, y + h], dtype=np.float32)
            if flipped:
                bbox[[0, 2]] = width - bbox[[2, 0]] - 1
            boxes[k, :2] = apply_affine_to_points(bbox[:2], trans_output)[0]
            boxes[k, 2:] = apply_affine_to_points(bbox[2:], trans_output)[0]
            labels[k] = self.cat_ids[ann["category_id"]]
        sample: dict[str, Any] = {"input": inp}
        sample.update(sample_targets(boxes, labels, len(self.cat_ids), output, MAX_OBJECTS))
        return sample


def reference_collate(samples: list[dict[str, np.ndarray]]) -> Any:
    """Stack the per-sample arrays into batch tensors (the original used the default collate)."""
    return default_collate(samples)
