"""Running a detector over a loader: normalisation, forward, decode and mapping back to image pixels."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from centernet.data.normalize import ImageNormalizer
from centernet.data.transforms.color import to_channel_order
from centernet.decode import BOX_COORDS, decode_maps, detections_to_image, unflip_ltrb
from centernet.utils.amp import autocast_context


def map_stride(images: torch.Tensor, heatmap: torch.Tensor) -> int:
    """Input pixels per output cell: the input ``[..., H_in, W_in]`` over the map ``[..., H, W]``.

    Raises:
        ValueError: when the input is not a whole multiple of the map on both axes.
    """
    (in_h, in_w), (out_h, out_w) = images.shape[-2:], heatmap.shape[-2:]
    stride = in_w // max(out_w, 1)
    if stride < 1 or (in_h, in_w) != (out_h * stride, out_w * stride):
        raise ValueError(f"input {in_h}x{in_w} is not a whole multiple of the output maps {out_h}x{out_w}")
    return stride


def predict_maps(model: nn.Module, images: torch.Tensor, *, flip: bool = False) -> dict[str, torch.Tensor]:
    """Forward pass returning the head's maps in fp32 (flip test-time augmentation optional).

    With ``flip``, the batch is also run mirrored; heatmap probabilities and sizes of the two passes
    are averaged, the offset comes from the un-flipped pass (as the original CenterNet does). An ``ltrb``
    head's maps are averaged with the mirrored pass's expressed for the un-mirrored input
    (:func:`centernet.decode.unflip_ltrb`).

    Args:
        model: the detector.
        images: normalised float ``[B, 3, H, W]``.

    Returns:
        ``{"heatmap": logits [B, C, h, w], "size": [B, 2, h, w], "offset": [B, 2, h, w]}`` or
        ``{"heatmap", "ltrb": [B, 4, h, w]}`` (input pixels), in fp32.
    """
    if not flip:
        outputs = model(images)
        return {key: value.float() for key, value in outputs.items()}
    both = model(torch.cat([images, images.flip(-1)]))
    batch = images.shape[0]
    heat = torch.sigmoid(both["heatmap"].float())
    heat = (heat[:batch] + heat[batch:].flip(-1)) / 2  # [B, C, h, w]
    eps = torch.finfo(torch.float32).eps
    maps = {"heatmap": torch.logit(heat, eps=eps)}
    if "ltrb" in both:
        ltrb = both["ltrb"].float()
        unflipped = unflip_ltrb(ltrb[batch:], down_ratio=map_stride(images, heat))
        maps["ltrb"] = (ltrb[:batch] + unflipped) / 2
        return maps
    maps["size"] = (both["size"][:batch].float() + both["size"][batch:].float().flip(-1)) / 2
    maps["offset"] = both["offset"][:batch].float()
    return maps


def decode_predicted(images: torch.Tensor, maps: dict[str, torch.Tensor], *, k: int) -> torch.Tensor:
    """:func:`centernet.decode.decode_maps` of :func:`predict_maps`'s output for ``images`` (any head):
    ``[B, K, 6]`` detections on the output grid."""
    return decode_maps(maps, down_ratio=map_stride(images, maps["heatmap"]), k=k)


@torch.inference_mode()
def detect_windows(
    model: nn.Module,
    normalizer: ImageNormalizer,
    windows_bgr: np.ndarray,
    *,
    channel_order: str,
    device: torch.device,
    amp: str = "off",
    flip: bool = False,
    topk: int = 100,
) -> list[np.ndarray]:
    """Run a batch of equal-size windows as they are (no resize, no letterbox): the network input of sliced
    inference (:mod:`centernet.inference.slicing`).

    Args:
        windows_bgr: uint8 BGR ``[B, S, S, 3]``, ``S`` a multiple of the model's size divisor.

    Returns:
        Per window float32 ``[topk, 6]`` rows ``[x1, y1, x2, y2, score, class]`` in window pixels.
    """
    pixels = np.stack([to_channel_order(window, channel_order) for window in windows_bgr])
    inputs = normalizer(torch.from_numpy(pixels).permute(0, 3, 1, 2).to(device))  # [B, 3, S, S]
    with autocast_context(device, amp):
        maps = predict_maps(model, inputs, flip=flip)
    dets = decode_predicted(inputs, maps, k=topk)
    dets[..., :BOX_COORDS] *= map_stride(inputs, maps["heatmap"])  # output grid -> window pixels
    return list(dets.cpu().numpy())


@torch.inference_mode()
def run_inference(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    normalizer: ImageNormalizer,
    *,
    device: torch.device,
    topk: int = 100,
    flip: bool = False,
    amp: str = "off",
    progress: bool = True,
) -> list[tuple[dict[str, Any], np.ndarray]]:
    """Detect on every image of ``loader``.

    Returns:
        One ``(meta, detections)`` pair per image, where ``detections`` is float32 ``[K, 6]`` rows
        ``[x1, y1, x2, y2, score, label]`` in original-image pixels, best first.
    """
    was_training = model.training
    model.eval()
    results: list[tuple[dict[str, Any], np.ndarray]] = []
    for batch in tqdm(loader, desc="eval", disable=not progress, leave=False, dynamic_ncols=True):
        images = normalizer(batch["images"].to(device, non_blocking=True))
        with autocast_context(device, amp):
            maps = predict_maps(model, images, flip=flip)
        dets = decode_predicted(images, maps, k=topk).cpu().numpy()
        output_size = tuple(maps["heatmap"].shape[-2:])  # (height, width)
        for meta, image_dets in zip(batch["metas"], dets, strict=True):
            mapped = detections_to_image(image_dets, meta["center"], meta["scale"], output_size)
            results.append((meta, mapped))
    model.train(was_training)
    return results
