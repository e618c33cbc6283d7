"""Sliced inference over a dataset (evaluation of large images) and the config sections that ask for it.

A val set is evaluated sliced when its own ``slice`` section (``data.val[i].slice``) or, failing that,
``eval.slice`` has a ``size`` above 0; each image is then read whole from its file and run through
:func:`centernet.inference.slicing.predict_sliced`, as :class:`~centernet.inference.predictor.Detector`
and ``tools/demo.py --slice`` do (docs/inference.md, "Large images").
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from centernet.config.schema import Config, SliceConfig
from centernet.data.base import DetectionDataset
from centernet.data.build import val_set_sections
from centernet.data.normalize import ImageNormalizer
from centernet.inference.runner import detect_windows
from centernet.inference.seam_merge import SeamMergeSettings
from centernet.inference.slicing import ArraySource, SliceSettings, predict_sliced
from centernet.inference.tta import MultiScalePredictor, TestTimeAugmentation


def slice_settings(section: SliceConfig, key: str = "eval.slice") -> SliceSettings | None:
    """The :class:`SliceSettings` of a config section, ``None`` when its ``size`` is 0.

    Raises:
        ValueError: a bad value; the message starts with ``key``.
    """
    if section.size == 0:
        return None
    try:
        return SliceSettings(
            size=section.size, overlap=section.overlap, scale=section.scale, full_image=section.full_image,
            batch_size=section.batch_size, merge=SeamMergeSettings(iou=section.merge_iou, ios=section.merge_ios),
        )
    except ValueError as error:
        raise ValueError(f"{key}: {error}") from None


def val_set_slices(cfg: Config) -> dict[str | None, SliceSettings | None]:
    """The sliced-inference settings of each val set by name: its own ``slice`` section, else ``eval.slice``."""
    slices: dict[str | None, SliceSettings | None] = {}
    for name, section in val_set_sections(cfg):
        own = getattr(section, "slice", None)
        slices[name] = slice_settings(own, f"data.val[{name}].slice") if own is not None else slice_settings(
            cfg.eval.slice)
    return slices


@torch.inference_mode()
def run_sliced_inference(
    model: nn.Module,
    dataset: DetectionDataset,
    normalizer: ImageNormalizer,
    settings: SliceSettings,
    *,
    input_size: tuple[int, int],
    channel_order: str,
    device: torch.device,
    amp: str = "off",
    flip: bool = False,
    topk: int = 100,
    max_dets: int = 100,
    progress: bool = True,
    rank: int = 0,
    world_size: int = 1,
) -> list[tuple[dict[str, Any], np.ndarray]]:
    """Detect on every image of ``dataset`` (this rank's share: images ``rank, rank + world_size, ...``) in
    windows, as :func:`centernet.inference.runner.run_inference` does on whole images.

    Args:
        topk: detections decoded per window.
        max_dets: merged detections kept per image (the best ones).

    Returns:
        One ``(meta, detections)`` pair per image: float32 ``[K, 6]`` rows in image pixels, best first.
    """
    settings.check_divisor(int(getattr(model, "size_divisor", 32)))
    settings = settings.for_device(device.type)
    was_training = model.training
    model.eval()
    windows = functools.partial(detect_windows, model, normalizer, channel_order=channel_order, device=device,
                                amp=amp, flip=flip, topk=topk)
    whole = MultiScalePredictor(model, normalizer, TestTimeAugmentation(flip=flip), input_size=input_size,
                                channel_order=channel_order, device=device, amp=amp)
    results: list[tuple[dict[str, Any], np.ndarray]] = []
    indices = range(rank, len(dataset), world_size)
    for index in tqdm(indices, desc="eval (sliced)", disable=not progress, leave=False, dynamic_ncols=True):
        raw = dataset.load_raw(index)
        image = raw["image"]
        rows = predict_sliced(ArraySource(image), windows, settings, predict_full=functools.partial(whole, image),
                              progress=progress)
        results.append(({"image_id": raw["image_id"], "file_name": raw["file_name"]}, rows[:max_dets]))
    model.train(was_training)
    return results
