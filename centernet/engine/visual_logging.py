"""TensorBoard images during training: boxes and heatmaps of the current batch, every ``runtime.vis_interval``.

One image per logged sample, three panels side by side on the network input:
(1) ground-truth boxes (green) and decoded predictions above ``score_thr`` (magenta), (2) the predicted
centre heatmap (sigmoid, maximum over classes) and (3) the rendered target heatmap, both blended over
the input. Written as ``train/visual/<i>`` (HWC, RGB) at the training iteration.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

import cv2
import numpy as np
import torch

from centernet.decode import decode_maps
from centernet.utils.visualize import DEFAULT_SCORE_THR, draw_predictions_and_ground_truth, overlay_heatmap, tile_images

logger = logging.getLogger(__name__)

VISUAL_TAG = "train/visual"
DEFAULT_MAX_IMAGES = 2
_VIS_TOPK = 100


class ImageWriter(Protocol):
    """The part of ``torch.utils.tensorboard.SummaryWriter`` used here."""

    def add_image(self, tag: str, img_tensor: Any, global_step: int | None = None, *, dataformats: str = "CHW"
                  ) -> None:
        """Write one image."""
        ...


def should_log_visuals(iteration: int, vis_interval: int) -> bool:
    """True when ``runtime.vis_interval > 0`` and ``iteration`` is a multiple of it."""
    return vis_interval > 0 and iteration % vis_interval == 0


def training_visual(
    image: np.ndarray,
    gt_boxes: np.ndarray,
    outputs: Mapping[str, torch.Tensor],
    target_heatmap: torch.Tensor,
    *,
    index: int,
    down_ratio: int,
    score_thr: float = DEFAULT_SCORE_THR,
) -> np.ndarray:
    """The three panels of sample ``index`` of a batch, tiled.

    Args:
        image: uint8 ``[H, W, 3]`` BGR network input.
        gt_boxes: float ``[N, 4]`` xyxy on the input grid (valid objects only).
        outputs: the model's maps ``heatmap [B, C, h, w]`` logits, ``size``, ``offset`` ``[B, 2, h, w]``
            (or ``ltrb [B, 4, h, w]``).
        target_heatmap: float ``[B, C, h, w]`` rendered targets.
        index: which sample of the batch.
        down_ratio: input pixels per output cell.
        score_thr: predictions below this are not drawn.

    Returns:
        uint8 ``[H, 3 W + 2 gap, 3]`` BGR.
    """
    maps = {key: value[index : index + 1].detach().float() for key, value in outputs.items()}
    dets = decode_maps(maps, down_ratio=down_ratio, k=_VIS_TOPK)[0].cpu().numpy()
    boxes_panel = draw_predictions_and_ground_truth(
        image, gt_boxes, dets[:, :4] * down_ratio, dets[:, 4], score_thr=score_thr
    )
    predicted = torch.sigmoid(maps["heatmap"][0]).cpu().numpy()  # [C, h, w]
    target = target_heatmap[index].detach().float().cpu().numpy()
    return tile_images([boxes_panel, overlay_heatmap(image, predicted), overlay_heatmap(image, target)])


def log_training_visuals(
    writer: ImageWriter | None,
    *,
    step: int,
    batch: Mapping[str, Any],
    outputs: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    channel_order: str,
    down_ratio: int,
    score_thr: float = DEFAULT_SCORE_THR,
    max_images: int = DEFAULT_MAX_IMAGES,
) -> int:
    """Write the first ``max_images`` samples of a training batch to TensorBoard (see the module docstring).

    Args:
        writer: a ``SummaryWriter`` (``None``: nothing is written, e.g. on ranks other than 0).
        step: the global step (training iteration).
        batch: the collated batch: ``images`` uint8 ``[B, 3, H, W]`` in ``channel_order``, ``boxes``
            ``[B, M, 4]`` xyxy on the input grid, ``valid`` bool ``[B, M]``.
        outputs: the model output of that batch (``heatmap`` logits, ``size``, ``offset`` or ``ltrb``).
        targets: :func:`centernet.targets.render_targets` of that batch (``heatmap`` is used).
        channel_order: ``rgb`` | ``bgr``, the order of ``batch["images"]``.
        down_ratio: input pixels per output cell.
        score_thr: predictions below this are not drawn.
        max_images: samples logged per call.

    Returns:
        The number of images written.
    """
    if writer is None:
        return 0
    images = batch["images"]
    count = min(max_images, images.shape[0])
    for index in range(count):
        image = images[index].permute(1, 2, 0).cpu().numpy()
        if channel_order == "rgb":
            image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        gt = batch["boxes"][index][batch["valid"][index]].cpu().numpy()
        tiled = training_visual(np.ascontiguousarray(image), gt, outputs, targets["heatmap"], index=index,
                                down_ratio=down_ratio, score_thr=score_thr)
        writer.add_image(f"{VISUAL_TAG}/{index}", cv2.cvtColor(tiled, cv2.COLOR_BGR2RGB), step, dataformats="HWC")
    return count
