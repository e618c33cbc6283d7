"""Running a detector over a loader: normalisation, forward, decode and mapping back to image pixels."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from centernet.decode import decode_detections, detections_to_image

AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class ImageNormalizer(nn.Module):
    """uint8 images ``[B, 3, H, W]`` → float ``(x / 255 - mean) / std`` on the images' device.

    Args:
        mean: per-channel mean as fractions of 255, in the images' channel order.
        std: per-channel standard deviation as fractions of 255.
    """

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float], *, channels_last: bool = False) -> None:
        super().__init__()
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        scale = 1.0 / (255.0 * torch.tensor(std, dtype=torch.float32))
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", (-torch.tensor(mean) / torch.tensor(std)).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Args: images (uint8 ``[B, 3, H, W]``). Returns float32 ``[B, 3, H, W]``."""
        return torch.addcmul(self.shift, images.float(), self.scale).contiguous(memory_format=self.memory_format)


def autocast_context(device: torch.device, amp: str) -> Any:
    """``torch.autocast`` for ``runtime.amp`` (fp16 / bf16), or a no-op context for ``off``.

    Raises:
        ValueError: fp16 asked for on a CPU (use bf16 there).
    """
    if amp == "off":
        return nullcontext()
    if amp == "fp16" and device.type == "cpu":
        raise ValueError("runtime.amp=fp16 needs a CUDA device; use runtime.amp=bf16 on CPU")
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


def predict_maps(model: nn.Module, images: torch.Tensor, *, flip: bool = False) -> dict[str, torch.Tensor]:
    """Forward pass returning heatmap logits, size and offset maps (flip test-time augmentation optional).

    With ``flip``, the batch is also run mirrored; heatmap probabilities and sizes of the two passes
    are averaged, the offset comes from the un-flipped pass (as the original CenterNet does).

    Args:
        model: the detector.
        images: normalised float ``[B, 3, H, W]``.

    Returns:
        ``{"heatmap": logits [B, C, h, w], "size": [B, 2, h, w], "offset": [B, 2, h, w]}`` in fp32.
    """
    if not flip:
        outputs = model(images)
        return {key: value.float() for key, value in outputs.items()}
    both = model(torch.cat([images, images.flip(-1)]))
    batch = images.shape[0]
    heat = torch.sigmoid(both["heatmap"].float())
    heat = (heat[:batch] + heat[batch:].flip(-1)) / 2  # [B, C, h, w]
    size = (both["size"][:batch].float() + both["size"][batch:].float().flip(-1)) / 2
    eps = torch.finfo(torch.float32).eps
    return {"heatmap": torch.logit(heat, eps=eps), "size": size, "offset": both["offset"][:batch].float()}


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
        dets = decode_detections(maps["heatmap"], maps["size"], maps["offset"], k=topk).cpu().numpy()
        output_size = tuple(maps["heatmap"].shape[-2:])  # (height, width)
        for meta, image_dets in zip(batch["metas"], dets, strict=True):
            mapped = detections_to_image(image_dets, meta["center"], meta["scale"], output_size)
            results.append((meta, mapped))
    model.train(was_training)
    return results
