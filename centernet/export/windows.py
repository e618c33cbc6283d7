"""An exported detector (ONNX or TorchScript, written by ``tools/export.py``) as the window runner of
sliced inference: ``predict_sliced(source, ExportedWindows("model.onnx"), settings)`` runs a large image
through the file that is shipped, with the same windows and seam merge as the PyTorch model
(docs/inference.md, "Large images")."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from centernet.data.transforms.color import to_channel_order
from centernet.export.verify import load_exported
from centernet.inference.slicing import SliceSettings

METADATA_KEYS = ("format", "input_size", "channel_order", "mean", "std", "class_names")
PIXEL_MAX = 255.0


def read_export_metadata(path: str | Path) -> dict[str, Any]:
    """The ``<file>.json`` that ``tools/export.py`` writes next to an exported model.

    Raises:
        FileNotFoundError: the model or its metadata file is missing.
        ValueError: the metadata is not JSON or lacks a key; the message names the file and the keys.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported model {path} does not exist")
    meta_path = Path(f"{path}.json")
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} is missing: export the model with tools/export.py, which writes it")
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{meta_path} is not valid JSON: {error}") from None
    missing = [key for key in METADATA_KEYS if key not in metadata]
    if missing:
        raise ValueError(f"{meta_path} lacks {', '.join(missing)} (expected the metadata tools/export.py writes)")
    return dict(metadata)


class ExportedWindows:
    """Runs batches of windows through an exported detector file (a ``WindowPredictor``).

    Args:
        path: the ``.onnx`` or TorchScript file; ``<path>.json`` must be next to it.
    """

    def __init__(self, path: str | Path) -> None:
        self.metadata = read_export_metadata(path)
        self.input_size = (int(self.metadata["input_size"][0]), int(self.metadata["input_size"][1]))
        self.channel_order = str(self.metadata["channel_order"])
        self.class_names: tuple[str, ...] = tuple(self.metadata["class_names"])
        self._mean = np.asarray(self.metadata["mean"], dtype=np.float32) * PIXEL_MAX
        self._std = np.asarray(self.metadata["std"], dtype=np.float32) * PIXEL_MAX
        self._run = load_exported(path, str(self.metadata["format"]))

    def check(self, settings: SliceSettings) -> None:
        """Raise unless the windows' network input is the exported input size (the graph's size is fixed)."""
        net = settings.network_size
        if (net, net) != self.input_size:
            height, width = self.input_size
            raise ValueError(f"the exported model takes {height}x{width} inputs; slice windows give {net}x{net} "
                             f"(size {settings.size} x scale {settings.scale:g}): choose size and scale to match")

    def __call__(self, windows_bgr: np.ndarray) -> Sequence[np.ndarray]:
        """uint8 BGR ``[B, S, S, 3]`` -> per window float32 ``[K, 6]`` rows in window pixels."""
        return self.run(np.stack([to_channel_order(window, self.channel_order) for window in windows_bgr]))

    def normalise(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 ``[B, H, W, 3]`` in the model's channel order -> the float32 ``[B, 3, H, W]`` network input."""
        images = ((pixels.astype(np.float32) - self._mean) / self._std).transpose(0, 3, 1, 2)
        return np.ascontiguousarray(images)

    def run(self, pixels: np.ndarray) -> Sequence[np.ndarray]:
        """uint8 ``[B, H, W, 3]`` already in the model's channel order -> per image float32 ``[K, 6]`` rows in
        input pixels (the exported graph decodes)."""
        boxes, scores, classes = self._run(self.normalise(pixels))
        rows = np.concatenate([boxes, scores[..., None], classes[..., None].astype(np.float32)], axis=-1)
        return list(rows.astype(np.float32))
