"""The original CenterNet ``CtdetDetector`` path for one image, the baseline of the end-to-end inference row.

NumPy pre-processing (``cv2.warpAffine`` onto the fixed input, ``(x / 255 - mean) / std`` in float64),
a plain fp32 NCHW forward, the ``max_pool2d`` decode (:func:`benchmarks.reference.decode.reference_decode`)
and the NumPy post-processing of ``ctdet_post_process`` + ``merge_outputs``: every corner mapped back
through the inverse affine one point at a time, detections grouped per class, the top
``max_per_image`` kept over all classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import nn

from benchmarks.reference.decode import reference_decode

MAX_PER_IMAGE = 100


def _get_dir(src_point: Sequence[float], rot_rad: float) -> list[float]:
    sn, cs = np.sin(rot_rad), np.cos(rot_rad)
    return [src_point[0] * cs - src_point[1] * sn, src_point[0] * sn + src_point[1] * cs]


def _get_3rd_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    direct = a - b
    return b + np.array([-direct[1], direct[0]], dtype=np.float32)


def get_affine_transform(
    center: np.ndarray, scale: float, rot: float, output_size: Sequence[int], inv: bool = False
) -> np.ndarray:
    """The original ``get_affine_transform`` (square crop ``scale`` around ``center`` onto ``output_size``)."""
    src_w = scale
    dst_w, dst_h = output_size
    src_dir = _get_dir([0, src_w * -0.5], np.pi * rot / 180)
    dst_dir = np.array([0, dst_w * -0.5], np.float32)
    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0, :] = center
    src[1, :] = center + src_dir
    dst[0, :] = [dst_w * 0.5, dst_h * 0.5]
    dst[1, :] = np.array([dst_w * 0.5, dst_h * 0.5], np.float32) + dst_dir
    src[2:, :] = _get_3rd_point(src[0, :], src[1, :])
    dst[2:, :] = _get_3rd_point(dst[0, :], dst[1, :])
    return cv2.getAffineTransform(np.float32(dst), np.float32(src)) if inv else cv2.getAffineTransform(
        np.float32(src), np.float32(dst)
    )


def _affine_transform(pt: np.ndarray, t: np.ndarray) -> np.ndarray:
    new_pt = np.array([pt[0], pt[1], 1.0], dtype=np.float32).T
    return np.dot(t, new_pt)[:2]


def _transform_preds(coords: np.ndarray, center: np.ndarray, scale: float, output_size: Sequence[int]) -> np.ndarray:
    target_coords = np.zeros(coords.shape)
    trans = get_affine_transform(center, scale, 0, output_size, inv=True)
    for p in range(coords.shape[0]):
        target_coords[p, 0:2] = _affine_transform(coords[p, 0:2], trans)
    return target_coords


class OriginalDetector:
    """One image in, ``{class 1..C: float32 [N, 5] (x1, y1, x2, y2, score)}`` out, as the original demo does.

    Args:
        model: the network (fp32, NCHW), returning ``{"heatmap", "size", "offset"}``.
        num_classes: ``C``.
        input_size: ``(height, width)`` of the network input.
        mean: per-channel mean (fractions of 255, in ``channel_order``).
        std: per-channel standard deviation.
        channel_order: ``"rgb"`` (the BGR image is reversed) or ``"bgr"`` (as the original).
        down_ratio: input pixels per output cell.
    """

    def __init__(
        self, model: nn.Module, *, num_classes: int, input_size: Sequence[int], mean: Sequence[float],
        std: Sequence[float], channel_order: str, down_ratio: int = 4,
    ) -> None:
        self.model = model.eval()
        self.num_classes = num_classes
        self.inp_height, self.inp_width = (int(v) for v in input_size)
        self.mean = np.array(mean, dtype=np.float32).reshape(1, 1, 3)
        self.std = np.array(std, dtype=np.float32).reshape(1, 1, 3)
        self.rgb = channel_order == "rgb"
        self.down_ratio = down_ratio

    def pre_process(self, image: np.ndarray) -> tuple[torch.Tensor, dict[str, object]]:
        height, width = image.shape[0:2]
        c = np.array([width / 2.0, height / 2.0], dtype=np.float32)
        s = max(height, width) * 1.0
        trans_input = get_affine_transform(c, s, 0, [self.inp_width, self.inp_height])
        inp_image = cv2.warpAffine(image, trans_input, (self.inp_width, self.inp_height), flags=cv2.INTER_LINEAR)
        if self.rgb:
            inp_image = inp_image[:, :, ::-1]
        inp_image = ((inp_image / 255.0 - self.mean) / self.std).astype(np.float32)
        images = inp_image.transpose(2, 0, 1).reshape(1, 3, self.inp_height, self.inp_width)
        meta = {
            "c": c, "s": s, "out_height": self.inp_height // self.down_ratio,
            "out_width": self.inp_width // self.down_ratio,
        }
        return torch.from_numpy(images), meta

    def post_process(self, dets: np.ndarray, meta: dict[str, object]) -> dict[int, np.ndarray]:
        """``ctdet_post_process`` for one image, then the per-class arrays (scale 1)."""
        dets = dets.reshape(-1, dets.shape[-1]).copy()
        size = (meta["out_width"], meta["out_height"])
        dets[:, :2] = _transform_preds(dets[:, 0:2], meta["c"], meta["s"], size)  # type: ignore[arg-type]
        dets[:, 2:4] = _transform_preds(dets[:, 2:4], meta["c"], meta["s"], size)  # type: ignore[arg-type]
        classes = dets[:, -1]
        results = {}
        for j in range(self.num_classes):
            inds = classes == j
            rows = np.concatenate([dets[inds, :4].astype(np.float32), dets[inds, 4:5].astype(np.float32)], axis=1)
            results[j + 1] = np.array(rows.tolist(), dtype=np.float32).reshape(-1, 5)
        return results

    def merge_outputs(self, results: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        scores = np.hstack([results[j][:, 4] for j in range(1, self.num_classes + 1)])
        if len(scores) > MAX_PER_IMAGE:
            kth = len(scores) - MAX_PER_IMAGE
            thresh = np.partition(scores, kth)[kth]
            for j in range(1, self.num_classes + 1):
                results[j] = results[j][results[j][:, 4] >= thresh]
        return results

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> dict[int, np.ndarray]:
        images, meta = self.pre_process(image)
        output = self.model(images)
        dets = reference_decode(output["heatmap"], output["size"], output["offset"], k=MAX_PER_IMAGE)
        return self.merge_outputs(self.post_process(dets.numpy(), meta))


def as_rows(results: dict[int, np.ndarray]) -> np.ndarray:
    """float32 ``[K, 6]`` rows ``[x1, y1, x2, y2, score, label]`` (0-based labels), best first."""
    rows = [
        np.concatenate([boxes, np.full((len(boxes), 1), j - 1, np.float32)], axis=1) for j, boxes in results.items()
    ]
    stacked = np.concatenate(rows, axis=0) if rows else np.zeros((0, 6), np.float32)
    return stacked[np.argsort(-stacked[:, 4], kind="stable")]
