"""The F1-best score threshold stored in a checkpoint becomes the default of ``Detector`` and ``tools/demo.py``."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from centernet.engine.checkpoint import load_checkpoint, save_checkpoint
from centernet.inference.predictor import Detector
from tests.conftest import load_script
from tests.inference.test_predictor import tiny_config, write_checkpoint

demo = load_script("tools/demo.py")


def checkpoint_with_threshold(path: Path, threshold: float | None) -> Path:
    write_checkpoint(path, tiny_config())
    if threshold is not None:
        state = load_checkpoint(path)
        state["score_threshold"] = threshold
        save_checkpoint(state, path)
    return path


def test_detector_defaults_to_the_stored_threshold_and_an_argument_wins(tmp_path: Path) -> None:
    stored = checkpoint_with_threshold(tmp_path / "stored.pth", 0.42)
    assert Detector.from_checkpoint(stored, device="cpu").score_threshold == 0.42
    assert Detector.from_checkpoint(stored, device="cpu", score_threshold=0.05).score_threshold == 0.05
    plain = checkpoint_with_threshold(tmp_path / "plain.pth", None)
    assert Detector.from_checkpoint(plain, device="cpu").score_threshold == 0.3


@pytest.mark.parametrize(("stored", "extra", "expected"), [
    (0.0, [], 100),  # the stored threshold keeps every top-100 detection of the random-init model
    (1.0, [], 0),  # no score reaches 1
    (1.0, ["--score-thr", "0"], 100),  # an explicit --score-thr wins
])
def test_demo_uses_the_stored_threshold(tmp_path: Path, stored: float, extra: list[str], expected: int) -> None:
    checkpoint = checkpoint_with_threshold(tmp_path / "tiny.pth", stored)
    image = tmp_path / "photo.png"
    assert cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 256, (40, 72, 3), dtype=np.uint8))
    out = tmp_path / "out"
    assert demo.main(["--checkpoint", str(checkpoint), "--input", str(image), "--output", str(out),
                      "--device", "cpu", "--no-progress", *extra]) == 0
    assert len(json.loads((out / "detections.json").read_text())) == expected
