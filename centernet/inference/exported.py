"""A model file written by ``tools/export.py`` (ONNX fp32 or int8, TorchScript) run like :class:`Detector`.

The exported graph holds the network and the decoder for a fixed input size; :class:`ExportedDetector` adds
the same pre-processing (the validation letterbox warp, the channel order and normalisation recorded in
``<file>.json``) and post-processing (boxes mapped back to image pixels) as the PyTorch :class:`Detector`, so
``tools/eval.py`` and ``tools/demo.py`` score and run the file that is shipped (docs/inference.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from centernet.data.transforms import ValTransform
from centernet.decode import detections_to_image
from centernet.export.windows import ExportedWindows
from centernet.inference.detections import Detections
from centernet.inference.slicing import ArraySource, ImageSource, SliceSettings, SliceStats, predict_sliced
from centernet.utils.visualize import DEFAULT_SCORE_THR

EXPORTED_SUFFIXES = (".onnx", ".pt", ".ts")


def is_exported(path: str | Path) -> bool:
    """Whether ``path`` names an exported model (by its suffix) rather than a training checkpoint."""
    return Path(path).suffix.lower() in EXPORTED_SUFFIXES


class ExportedDetector:
    """An exported detector file with ``Detector``'s interface (``__call__``, ``predict_batch``, ``predict_sliced``).

    Args:
        path: the exported file; ``<path>.json`` (written by ``tools/export.py``) must be next to it.
        slice: run calls in overlapping windows (the window's network size must be the exported input size).

    Raises:
        FileNotFoundError: the file or its metadata is missing.
        ValueError: the metadata lacks a key (the message names the file and the keys).
    """

    def __init__(self, path: str | Path, *, slice: SliceSettings | None = None) -> None:
        self.path = Path(path)
        self.runner = ExportedWindows(self.path)
        metadata = self.runner.metadata
        self.class_names = self.runner.class_names
        self.transform = ValTransform(input_size=self.runner.input_size, channel_order=self.runner.channel_order)
        ids = metadata.get("category_ids")
        self.category_ids = None if ids is None else tuple(int(i) for i in ids)
        self.score_threshold = float(metadata.get("score_threshold", DEFAULT_SCORE_THR))
        self.slice = slice
        if slice is not None:
            self.runner.check(slice)

    def __call__(self, image_bgr: np.ndarray) -> Detections:
        """Detect in one uint8 BGR ``[H, W, 3]`` image (in windows with ``slice``); boxes in image pixels."""
        if self.slice is not None:
            return self.predict_sliced(image_bgr)
        return self.predict_batch([image_bgr])[0]

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detect in several images (any sizes) with one run of the exported graph."""
        if len(images) == 0:
            return []
        samples = []
        for index, image in enumerate(images):
            try:
                samples.append(self.transform(image))
            except ValueError as error:
                raise ValueError(f"ExportedDetector: image {index}: {error}") from error
        rows = self.runner.run(np.stack([sample.image for sample in samples]))
        return [Detections.from_rows(detections_to_image(image_rows, sample.center, sample.scale,
                                                         self.runner.input_size), self.class_names)
                for sample, image_rows in zip(samples, rows, strict=True)]

    def predict_sliced(self, image: np.ndarray | ImageSource, settings: SliceSettings | None = None, *,
                       progress: bool = False, stats: SliceStats | None = None) -> Detections:
        """As :meth:`centernet.inference.predictor.Detector.predict_sliced`, through the exported graph."""
        settings = settings or self.slice
        if settings is None:
            raise ValueError("ExportedDetector.predict_sliced: no slice settings")
        self.runner.check(settings)
        source = ArraySource(image) if isinstance(image, np.ndarray) else image
        rows = predict_sliced(source, self.runner, settings.for_device("cpu"), progress=progress, stats=stats)
        return Detections.from_rows(rows, self.class_names)
