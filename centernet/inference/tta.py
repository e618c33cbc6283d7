"""Test-time augmentation: flip, several input scales, and the original keep-resolution (pad) input.

For every scale ``s`` the image is resized to ``(int(W * s), int(H * s))`` and placed on the network
input with one affine warp, as the original CenterNet ``pre_process`` does:

- ``resize: fixed``: input ``data.input_size``, crop centre ``(w_s / 2, h_s / 2)``, crop side
  ``max(H, W)`` (at ``s = 1`` this is exactly :class:`~centernet.data.transforms.ValTransform`; other
  scales zoom in or out inside the fixed input);
- ``resize: pad`` (the original ``--keep_res``): input ``(h_s | 31) + 1`` x ``(w_s | 31) + 1`` (the
  next multiple of 32 *above* the size, always at least one pixel of padding, as the original), crop
  centre ``(w_s // 2, h_s // 2)``, crop side = the input width: a pure translation, no resampling
  beyond the resize.

Each pass is decoded (top-K, with the flip merge of :func:`predict_maps` when asked), mapped back
through the inverse affine and divided by ``s``; with several scales the detections of all passes are
merged class by class (:func:`centernet.inference.merge.merge_detections`) and the best K kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from centernet.config.schema import Config
from centernet.data.base import DetectionDataset
from centernet.data.normalize import ImageNormalizer
from centernet.data.transforms.color import check_channel_order, to_channel_order
from centernet.data.transforms.geometry import check_image, warp_image
from centernet.decode import BOX_COORDS, detections_to_image
from centernet.inference.merge import MergeSettings, merge_detections
from centernet.inference.runner import decode_predicted, predict_maps
from centernet.utils.affine import get_affine_transform
from centernet.utils.amp import autocast_context

logger = logging.getLogger(__name__)

RESIZE_MODES = ("fixed", "pad")
DEFAULT_SIZE_DIVISOR = 32  # the backbone stride: pad-mode inputs are multiples of it


def padded_size(size: int, divisor: int = DEFAULT_SIZE_DIVISOR) -> int:
    """The original keep-resolution input side: ``(size | (divisor - 1)) + 1`` (``divisor`` a power of 2).

    Always strictly larger than ``size`` (``64 -> 96``, ``65 -> 96``, ``95 -> 96``), as the original.
    """
    if divisor < 1 or divisor & (divisor - 1):
        raise ValueError(f"padded_size: divisor must be a power of 2, got {divisor}")
    return (int(size) | (divisor - 1)) + 1


@dataclass(frozen=True)
class TestTimeAugmentation:
    """Which test-time passes to run and how to merge them.

    Attributes:
        scales: image scale factors (``> 0``), one pass each.
        flip: also run each pass mirrored (heatmap and size averaged, offset of the un-flipped pass).
        resize: ``fixed`` (warp into ``data.input_size``) | ``pad`` (keep the resolution, pad to 32).
        merge: how the passes of several scales are merged (method, thresholds, top-K).
    """

    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    resize: str = "fixed"
    merge: MergeSettings = field(default_factory=MergeSettings)

    __test__ = False  # not a pytest test class despite the name

    def __post_init__(self) -> None:
        if not self.scales or any(not (s > 0) for s in self.scales):
            raise ValueError(f"eval.scales must be a non-empty list of positive numbers, got {list(self.scales)}")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"eval.resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}")

    @property
    def is_plain(self) -> bool:
        """True for the batched single-pass evaluation path (one scale 1.0, fixed input; flip allowed)."""
        return self.scales == (1.0,) and self.resize == "fixed"


def build_tta(cfg: Config, *, flip: bool | None = None, scales: Sequence[float] | None = None) -> TestTimeAugmentation:
    """The test-time augmentation of ``cfg.eval`` (``flip`` / ``scales`` override the config's)."""
    ev = cfg.eval
    return TestTimeAugmentation(
        scales=tuple(float(s) for s in (ev.scales if scales is None else scales)),
        flip=ev.flip if flip is None else flip,
        resize=ev.resize,
        merge=MergeSettings(
            method=ev.merge,
            nms_iou=ev.nms_iou,
            soft_nms_sigma=ev.soft_nms_sigma,
            soft_nms_score_thr=ev.soft_nms_score_thr,
            topk=ev.topk,
        ),
    )


@dataclass
class ScaledInput:
    """One image prepared for one test scale.

    Attributes:
        image: uint8 ``[h_in, w_in, 3]`` network input in the model's channel order.
        center: ``(cx, cy)`` of the crop in pixels of the *resized* image.
        side: side of the crop in pixels of the resized image (the inverse affine's scale).
        scale: the test scale ``s``; resized-image pixels = image pixels x ``s``.
    """

    image: np.ndarray
    center: np.ndarray
    side: float
    scale: float


def prepare_scaled_input(
    image_bgr: np.ndarray,
    scale: float,
    *,
    resize: str,
    input_size: Sequence[int],
    channel_order: str = "rgb",
    size_divisor: int = DEFAULT_SIZE_DIVISOR,
) -> ScaledInput:
    """Resize ``image_bgr`` by ``scale`` and warp it onto the network input (see the module docstring).

    Args:
        image_bgr: uint8 ``[H, W, 3]`` BGR image.
        scale: test scale ``s > 0``.
        resize: ``fixed`` | ``pad``.
        input_size: ``(height, width)`` of the input in ``fixed`` mode.
        channel_order: ``rgb`` | ``bgr``, the model's channel order.
        size_divisor: pad-mode inputs are the next multiple of this above the resized size.
    """
    height, width = check_image(image_bgr)
    new_h, new_w = max(1, int(height * scale)), max(1, int(width * scale))
    resized = image_bgr if (new_h, new_w) == (height, width) else cv2.resize(image_bgr, (new_w, new_h))
    if resize == "fixed":
        in_h, in_w = int(input_size[0]), int(input_size[1])
        center = np.array([new_w / 2.0, new_h / 2.0], dtype=np.float32)
        side = float(max(height, width))
    elif resize == "pad":
        in_h, in_w = padded_size(new_h, size_divisor), padded_size(new_w, size_divisor)
        center = np.array([new_w // 2, new_h // 2], dtype=np.float32)
        side = float(in_w)
    else:
        raise ValueError(f"eval.resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    matrix = get_affine_transform(center, side, (in_w, in_h))
    warped = to_channel_order(warp_image(resized, matrix, (in_h, in_w)), check_channel_order(channel_order))
    return ScaledInput(image=warped, center=center, side=side, scale=float(scale))


def scaled_detections_to_image(dets: np.ndarray | torch.Tensor, prepared: ScaledInput,
                               output_size: Sequence[int]) -> np.ndarray:
    """Map ``[K, 6]`` output-grid detections of one scaled pass back to original-image pixels.

    Returns:
        float32 ``[K, 6]``: the inverse crop affine, then boxes divided by the test scale.
    """
    mapped = detections_to_image(dets, prepared.center, prepared.side, output_size)
    mapped[:, :BOX_COORDS] /= prepared.scale
    return mapped


class MultiScalePredictor:
    """Runs a model over one BGR image with test-time augmentation.

    Args:
        model: the detector (eval mode is set here).
        normalizer: uint8 → normalised float, on ``device``.
        tta: the passes and the merge.
        input_size: ``(height, width)`` of the fixed-mode input.
        channel_order: the model's channel order.
        device: where the model runs.
        amp: autocast precision ``off | fp16 | bf16``.
    """

    def __init__(
        self,
        model: nn.Module,
        normalizer: ImageNormalizer,
        tta: TestTimeAugmentation,
        *,
        input_size: Sequence[int],
        channel_order: str,
        device: torch.device,
        amp: str = "off",
    ) -> None:
        self.model = model.eval()
        self.normalizer = normalizer
        self.tta = tta
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.channel_order = check_channel_order(channel_order)
        self.device = device
        self.amp = amp
        self.size_divisor = int(getattr(model, "size_divisor", DEFAULT_SIZE_DIVISOR))

    @torch.inference_mode()
    def __call__(self, image_bgr: np.ndarray) -> np.ndarray:
        """Detect in one uint8 ``[H, W, 3]`` BGR image.

        Returns:
            float32 ``[K, 6]`` ``[x1, y1, x2, y2, score, class]`` in image pixels, best first.
        """
        passes = []
        topk = self.tta.merge.topk
        for scale in self.tta.scales:
            prepared = prepare_scaled_input(
                image_bgr, scale, resize=self.tta.resize, input_size=self.input_size,
                channel_order=self.channel_order, size_divisor=self.size_divisor,
            )
            batch = torch.from_numpy(np.ascontiguousarray(prepared.image)).permute(2, 0, 1)[None]  # [1, 3, h, w]
            inputs = self.normalizer(batch.to(self.device))
            with autocast_context(self.device, self.amp):
                maps = predict_maps(self.model, inputs, flip=self.tta.flip)
            dets = decode_predicted(inputs, maps, k=topk)[0]
            passes.append(scaled_detections_to_image(dets, prepared, maps["heatmap"].shape[-2:]))
        if len(passes) == 1:
            return passes[0]
        return merge_detections(np.concatenate(passes), self.tta.merge)


def run_tta_inference(
    predictor: Callable[[np.ndarray], np.ndarray], dataset: DetectionDataset, *, progress: bool = True
) -> list[tuple[dict[str, Any], np.ndarray]]:
    """Detect on every image of ``dataset`` (its raw images, one at a time) with ``predictor`` (a
    :class:`MultiScalePredictor`, or any callable from a BGR image to ``[K, 6]`` rows in image pixels).

    Returns:
        One ``(meta, detections)`` pair per image (``meta`` has ``image_id`` and ``file_name``), as
        :func:`centernet.inference.runner.run_inference` returns.
    """
    results: list[tuple[dict[str, Any], np.ndarray]] = []
    for index in tqdm(range(len(dataset)), desc="eval (tta)", disable=not progress, leave=False, dynamic_ncols=True):
        raw = dataset.load_raw(index)
        meta = {"image_id": raw["image_id"], "file_name": raw["file_name"]}
        results.append((meta, predictor(raw["image"])))
    return results
