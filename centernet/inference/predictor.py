"""Detect objects in single images with a trained checkpoint (the library side of ``tools/demo.py``).

:class:`Detector` wraps the evaluation path (``ValTransform`` → :class:`ImageNormalizer` → forward
under autocast → :func:`decode_maps` → :func:`detections_to_image`) for plain BGR arrays, so
that a script or notebook gets boxes in image pixels from one call.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from centernet.config import Config
from centernet.data.normalize import ImageNormalizer
from centernet.data.transforms import TransformedSample, ValTransform
from centernet.decode import detections_to_image
from centernet.inference.detections import Detections
from centernet.inference.merge import MergeSettings
from centernet.inference.optimize import optimize_model, plan_optimizations
from centernet.inference.runner import decode_predicted, detect_windows, predict_maps
from centernet.inference.sliced_runner import slice_settings
from centernet.inference.slicing import ArraySource, ImageSource, SliceSettings, SliceStats, predict_sliced
from centernet.inference.trained_model import load_trained_model
from centernet.inference.tta import MultiScalePredictor, TestTimeAugmentation, build_tta
from centernet.utils.affine import get_affine_transform
from centernet.utils.amp import autocast_context
from centernet.utils.env import cpu_has_fast_bf16, select_device
from centernet.utils.visualize import DEFAULT_SCORE_THR

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_TOPK", "Detections", "Detector"]

DEFAULT_TOPK = 100


class Detector:
    """A trained CenterNet ready to run on BGR images.

    Args:
        model: the detector (its weights loaded); moved to ``device`` and set to eval mode here.
        class_names: the ``C`` class names, in label order.
        input_size: ``(height, width)`` of the network input.
        channel_order: ``"rgb"`` or ``"bgr"``: the channel order the model was trained on.
        mean: per-channel mean (fractions of 255, in ``channel_order``).
        std: per-channel standard deviation (fractions of 255).
        device: where to run.
        amp: autocast precision ``off | fp16 | bf16`` (``fp16`` needs CUDA).
        channels_last: run the model and its input in NHWC memory format.
        flip: flip test-time augmentation.
        topk: detections kept per image.
        category_ids: optional dataset category id of each class (``label_to_category_id``).
        scales: test scales; anything but ``(1.0,)`` (or ``resize="pad"``) runs
            :class:`~centernet.inference.tta.MultiScalePredictor` image by image.
        resize: ``fixed`` (warp into ``input_size``) | ``pad`` (keep the resolution, pad to a multiple of 32).
        merge: how several scales are merged (default: Gaussian soft-NMS, keeping ``topk``).
        config: the experiment config the model was built from, when known (kept as ``self.config``).
        score_threshold: the default lowest score for callers that keep only confident detections
            (``detector(image).above(detector.score_threshold)``); calls return all ``topk`` regardless.
        optimize: inference speed-ups, e.g. ``"fast"`` (= ``"fold_bn,channels_last"``, same boxes) or
            ``"fast,compile"``; see :mod:`centernet.inference.optimize`. ``fold_bn`` changes the
            model passed in (its BatchNorm layers are folded away).
        slice: run every call on overlapping windows (:mod:`centernet.inference.slicing`); ``None`` =
            the whole image at ``input_size``.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        class_names: Sequence[str],
        input_size: Sequence[int],
        channel_order: str,
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device,
        amp: str = "off",
        channels_last: bool = False,
        flip: bool = False,
        topk: int = DEFAULT_TOPK,
        category_ids: Sequence[int] | None = None,
        scales: Sequence[float] = (1.0,),
        resize: str = "fixed",
        merge: MergeSettings | None = None,
        config: Config | None = None,
        score_threshold: float = DEFAULT_SCORE_THR,
        optimize: str | Sequence[str] | None = None,
        slice: SliceSettings | None = None,
    ) -> None:
        if topk < 1:
            raise ValueError(f"Detector: topk must be >= 1, got {topk}")
        if category_ids is not None and len(category_ids) != len(class_names):
            raise ValueError(
                f"Detector: {len(category_ids)} category_ids for {len(class_names)} class_names"
            )
        self.class_names = tuple(class_names)
        self.config = config
        self.category_ids = None if category_ids is None else tuple(int(i) for i in category_ids)
        plan = plan_optimizations(optimize, device=device, amp=amp, channels_last=channels_last)
        amp, channels_last = plan.amp, plan.channels_last
        self.optimizations = plan.steps
        self.device = device
        self.amp = amp
        self.flip = flip
        self.topk = topk
        self.score_threshold = float(score_threshold)
        self.transform = ValTransform(input_size=input_size, channel_order=channel_order)
        self.normalizer_mean = tuple(float(v) for v in mean)  # fractions of 255, in ``channel_order``
        self.normalizer_std = tuple(float(v) for v in std)
        self.normalizer = ImageNormalizer(mean, std, channels_last=channels_last).to(device)
        memory_format = torch.channels_last if channels_last else torch.preserve_format
        self.model = model.to(device).to(memory_format=memory_format).eval()
        if plan.steps:
            example = torch.zeros(1, 3, *self.transform.input_size, device=device)
            self.model = optimize_model(self.model, plan, example)
        merge = MergeSettings(topk=topk) if merge is None else dataclasses.replace(merge, topk=topk)
        self.tta = TestTimeAugmentation(scales=tuple(float(s) for s in scales), flip=flip, resize=resize, merge=merge)
        self.channel_order = channel_order
        self.size_divisor = int(getattr(model, "size_divisor", 32))
        if slice is not None:
            self._check_slice(slice)
        self.slice = slice
        self.multi_scale = MultiScalePredictor(
            self.model, self.normalizer, self.tta, input_size=input_size, channel_order=channel_order,
            device=device, amp=amp,
        )

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        *,
        config: Config | None = None,
        device: str = "auto",
        amp: str | None = None,
        flip: bool = False,
        topk: int = DEFAULT_TOPK,
        scales: Sequence[float] = (1.0,),
        resize: str = "fixed",
        score_threshold: float | None = None,
        optimize: str | Sequence[str] | None = None,
        slice: SliceSettings | None = None,
        config_slice: bool = True,
    ) -> Detector:
        """Rebuild the detector saved in a training checkpoint.

        The model, input size, normalisation, channel order and ``runtime.amp`` / ``channels_last``
        come from the config stored in the checkpoint, or from ``config`` when one is given (it then
        replaces the stored one entirely). Class names (and ``label_to_category_id`` when present)
        always come from the checkpoint.

        Args:
            path: a ``.pth`` written by the trainer (``model``, ``config``, ``class_names`` entries).
            config: optional config overriding the checkpoint's.
            device: ``auto | cpu | cuda | cuda:N``.
            amp: autocast precision; ``None`` = the config's ``runtime.amp`` (``fp16`` falls back to
                ``off`` on a CPU, with a warning).
            flip: flip test-time augmentation.
            topk: detections kept per image.
            scales: test scales (several: merged as the config's ``eval.merge`` and its thresholds say).
            resize: ``fixed`` | ``pad`` (see :mod:`centernet.inference.tta`).
            score_threshold: the detector's ``score_threshold``; ``None`` = the checkpoint's
                ``score_threshold`` (the F1-best threshold of its evaluation, docs/evaluation.md), else 0.3.
            optimize: inference speed-ups (see the class arguments), e.g. ``"fast"``.
            slice: sliced inference settings (see the class arguments); ``None`` = the config's ``eval.slice``
                when its ``size`` is set and ``config_slice``, else whole images.
            config_slice: whether ``eval.slice`` of the config applies when ``slice`` is ``None``.

        Raises:
            FileNotFoundError: no file at ``path``.
            ValueError: corrupt checkpoint, no ``config`` (and none given), no ``class_names``, or
                weights that do not fit the configured model (the message names the file).
        """
        torch_device = select_device(device)
        trained = load_trained_model(path, config, device=torch_device)
        cfg = trained.config
        return cls(
            trained.model,
            class_names=trained.class_names,
            input_size=cfg.data.input_size,
            channel_order=cfg.data.channel_order,
            mean=cfg.data.mean,
            std=cfg.data.std,
            device=torch_device,
            amp=_usable_amp(cfg.runtime.amp if amp is None else amp, torch_device),
            channels_last=cfg.runtime.channels_last,
            flip=flip,
            topk=topk,
            category_ids=trained.category_ids,
            scales=scales,
            resize=resize,
            merge=build_tta(cfg).merge,
            config=cfg,
            score_threshold=(
                _stored_score_threshold(trained.checkpoint.state) if score_threshold is None else score_threshold
            ),
            optimize=optimize,
            slice=slice if slice is not None or not config_slice else slice_settings(cfg.eval.slice),
        )

    @property
    def num_classes(self) -> int:
        """Number of classes ``C``."""
        return len(self.class_names)

    def __call__(self, image_bgr: np.ndarray) -> Detections:
        """Detect in one image.

        Args:
            image_bgr: uint8 ``[H, W, 3]`` BGR image (as read by ``cv2.imread``).

        Returns:
            The top-``topk`` :class:`Detections` (with ``slice``: every merged detection of the windows),
            boxes in ``image_bgr`` pixels, best first.
        """
        if self.slice is not None:
            return self.predict_sliced(image_bgr)
        return self.predict_batch([image_bgr])[0]

    @torch.inference_mode()
    def predict_sliced(
        self,
        image: np.ndarray | ImageSource,
        settings: SliceSettings | None = None,
        *,
        progress: bool = False,
        stats: SliceStats | None = None,
    ) -> Detections:
        """Detect in overlapping windows of an image of any size and merge across the seams.

        Args:
            image: uint8 BGR ``[H, W, 3]``, or a source read window by window (e.g.
                :class:`centernet.data.rasters.RasterSource` for a GeoTIFF larger than memory).
            settings: the windows and merge (default: the detector's ``slice``).
            progress: show a progress bar with windows/s (images of 16 windows or more).
            stats: filled with the windows, megapixels and seconds of the call.

        Returns:
            Every merged detection scoring at least ``settings.min_score``, in image pixels, best first.
        """
        settings = settings or self.slice
        if settings is None:
            raise ValueError("Detector.predict_sliced: no slice settings (pass settings or build with slice=...)")
        self._check_slice(settings)
        settings = settings.for_device(self.device.type)
        source = ArraySource(image) if isinstance(image, np.ndarray) else image
        full = None
        if settings.full_image:
            if not isinstance(image, np.ndarray):
                raise ValueError("slice full_image needs the image in memory (a raster is read window by window)")
            full = lambda: self.predict_batch([image])[0].rows()  # noqa: E731
        rows = predict_sliced(source, self.predict_windows, settings, predict_full=full, progress=progress,
                              stats=stats)
        return Detections.from_rows(rows, self.class_names)

    @torch.inference_mode()
    def predict_windows(self, windows: np.ndarray) -> list[np.ndarray]:
        """Run a batch of equal-size windows as they are (no resize, no letterbox).

        Args:
            windows: uint8 BGR ``[B, S, S, 3]``, ``S`` a multiple of the model's size divisor.

        Returns:
            Per window float32 ``[topk, 6]`` rows ``[x1, y1, x2, y2, score, class]`` in window pixels.
        """
        return detect_windows(self.model, self.normalizer, windows, channel_order=self.channel_order,
                              device=self.device, amp=self.amp, flip=self.flip, topk=self.topk)

    def _check_slice(self, settings: SliceSettings) -> None:
        if not self.tta.is_plain:
            raise ValueError("sliced inference runs one scale with the fixed input (flip allowed); "
                             f"drop scales {list(self.tta.scales)} / resize {self.tta.resize!r}")
        settings.check_divisor(self.size_divisor)

    @torch.inference_mode()
    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detect in several images (any sizes) with one forward pass.

        Args:
            images: uint8 ``[H_i, W_i, 3]`` BGR images.

        Returns:
            One :class:`Detections` per image, in input order.
        """
        if len(images) == 0:
            return []
        if not self.tta.is_plain:
            return [Detections.from_rows(self.multi_scale(image), self.class_names) for image in images]
        samples, inputs, maps = self._forward(images)
        dets = decode_predicted(inputs, maps, k=self.topk).cpu().numpy()
        output_size = tuple(maps["heatmap"].shape[-2:])  # (height, width)
        return [
            Detections.from_rows(
                detections_to_image(image_dets, sample.center, sample.scale, output_size), self.class_names
            )
            for sample, image_dets in zip(samples, dets, strict=True)
        ]

    @torch.inference_mode()
    def heatmap(self, image_bgr: np.ndarray) -> np.ndarray:
        """Per-class centre probabilities, aligned with the image, at the model's output resolution.

        The output grid covers the letterboxed square crop; it is warped back so that the returned
        map covers exactly the image (padding removed), ``h = round(H * r)``, ``w = round(W * r)``
        with ``r`` the output-grid cells per image pixel.

        Args:
            image_bgr: uint8 ``[H, W, 3]`` BGR image.

        Returns:
            float32 ``[C, h, w]`` sigmoid probabilities in ``[0, 1]``.
        """
        (sample,), _, maps = self._forward([image_bgr])
        probs = torch.sigmoid(maps["heatmap"][0]).cpu().numpy()  # [C, out_h, out_w]
        out_h, out_w = probs.shape[-2:]
        to_image = get_affine_transform(sample.center, sample.scale, (out_w, out_h), inverse=True)
        ratio = out_w / sample.scale  # output cells per image pixel (the crop keeps the aspect ratio)
        height, width = image_bgr.shape[:2]
        size = (max(1, round(width * ratio)), max(1, round(height * ratio)))  # (w, h) for cv2
        matrix = to_image * ratio  # output grid -> image pixels -> image pixels scaled by ``ratio``
        warped = [
            cv2.warpAffine(channel, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            for channel in probs
        ]
        if not warped:
            return np.zeros((0, size[1], size[0]), dtype=np.float32)
        return np.stack(warped).astype(np.float32, copy=False)

    def _forward(
        self, images: Sequence[np.ndarray]
    ) -> tuple[list[TransformedSample], torch.Tensor, dict[str, torch.Tensor]]:
        """Transform, normalise and run ``images``; returns the transformed samples, the network input and
        the fp32 maps."""
        samples: list[TransformedSample] = []
        for index, image in enumerate(images):
            try:
                samples.append(self.transform(image))
            except ValueError as error:
                raise ValueError(f"Detector: image {index}: {error}") from error
        batch = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2)  # [B, 3, H, W] uint8
        inputs = self.normalizer(batch.to(self.device))
        with autocast_context(self.device, self.amp):
            maps = predict_maps(self.model, inputs, flip=self.flip)
        return samples, inputs, maps


def _usable_amp(amp: str, device: torch.device) -> str:
    """``amp`` adjusted to what ``device`` can run (fp16 → off on a CPU), with a warning when changed."""
    if device.type != "cpu":
        return amp
    if amp == "fp16":
        logger.warning("runtime.amp=fp16 needs CUDA; running in fp32 on the CPU")
        return "off"
    if amp == "bf16" and not cpu_has_fast_bf16():
        logger.warning("runtime.amp=bf16 on a CPU without native bfloat16 is slow; consider amp='off'")
    return amp


def _stored_score_threshold(state: dict[str, Any]) -> float:
    """The checkpoint's ``score_threshold`` (its evaluation's F1-best one), else ``DEFAULT_SCORE_THR``."""
    value = state.get("score_threshold")
    return float(value) if isinstance(value, int | float) else DEFAULT_SCORE_THR
