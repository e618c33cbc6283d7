"""tools/heatmap_stats.py: peaks found at the objects of non-square images, the plot, names and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from centernet.inference.predictor import Detector
from tests.conftest import load_script
from tests.inference.test_predictor import CLASS_NAMES, tiny_config, write_checkpoint

heatmap_stats = load_script("tools/heatmap_stats.py")

CELLS_PER_PIXEL = 0.25
BACKGROUND, SPIKE = 0.1, 0.8
# (height, width) -> objects (x1, y1, x2, y2, class): a tall and a wide image, whose map sizes are rounded
# (301 x 37 -> 75 x 9 cells), so that x and y have different cells-per-pixel ratios.
OBJECTS = {(301, 37): [(4.0, 280.0, 30.0, 300.0, 2), (2.0, 10.0, 20.0, 30.0, 0)],
           (40, 122): [(100.0, 5.0, 120.0, 35.0, 4)]}


def write_coco(root: Path, class_names: list[str]) -> Path:
    images, annotations = [], []
    for image_id, ((height, width), objects) in enumerate(OBJECTS.items(), start=1):
        cv2.imwrite(str(root / f"{image_id}.png"), np.zeros((height, width, 3), np.uint8))
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": height, "width": width})
        for x1, y1, x2, y2, label in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(class_names)]
    path = root / "val.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def spike_heatmap(_detector: Detector, image: np.ndarray) -> np.ndarray:
    """What Detector.heatmap returns for a model with a 0.8 spike in the centre cell of each object."""
    height, width = image.shape[:2]
    heatmap = np.full((len(CLASS_NAMES), round(height * CELLS_PER_PIXEL), round(width * CELLS_PER_PIXEL)),
                      BACKGROUND, np.float32)
    for x1, y1, x2, y2, label in OBJECTS[(height, width)]:
        row, col = math.floor((y1 + y2) / 2 * CELLS_PER_PIXEL), math.floor((x1 + x2) / 2 * CELLS_PER_PIXEL)
        heatmap[label, row, col] = SPIKE
    return heatmap


def arguments(checkpoint: Path, annotations: Path, *extra: str) -> list[str]:
    return ["--checkpoints", str(checkpoint), "--device", "cpu", "--no-progress", *extra,
            f"data.val.ann_file={annotations}", f"data.val.img_dir={annotations.parent}"]


def test_peaks_are_found_at_the_objects_and_the_plot_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Detector, "heatmap", spike_heatmap)
    checkpoint = write_checkpoint(tmp_path / "study" / "run" / "seed0" / "checkpoints" / "last.pth", tiny_config())
    annotations = write_coco(tmp_path, list(CLASS_NAMES))
    plot = tmp_path / "hist.png"
    argv = arguments(checkpoint, annotations, "--plot", str(plot))
    assert heatmap_stats.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| checkpoint | p 50% | p 90% | p 99% | peak at objects (median) |")
    # 3 spikes among 5 x (75 x 9 + 10 x 30) cells: every quantile is the background; a centre mapped with
    # one ratio for both axes would miss the tall image's bottom spike by 2 rows
    assert out[2] == "| run/seed0 | 0.100 | 0.100 | 0.100 | 0.800 | 100% | 3 |"
    assert plot.read_bytes().startswith(b"\x89PNG")

    with pytest.raises(SystemExit):  # the plot is kept unless --overwrite
        heatmap_stats.parse_args(argv)
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert heatmap_stats.parse_args([*argv, "--overwrite"]).overwrite


def test_names_are_short_unless_they_clash() -> None:
    paths = [Path("w/focal/seed0/checkpoints/last.pth"), Path("w/focal/seed0/checkpoints/best.pth"),
             Path("w/bce/seed1/checkpoints/last.pth"), Path("model.pth")]
    assert heatmap_stats.run_names(paths) == [str(paths[0]), str(paths[1]), "bce/seed1", "model.pth"]


def test_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        heatmap_stats.parse_args(["--checkpoints", str(tmp_path / "none.pth")])
    assert f"--checkpoints: {tmp_path / 'none.pth'} not found" in capsys.readouterr().err

    checkpoint = write_checkpoint(tmp_path / "model.pth", tiny_config())
    other_classes = write_coco(tmp_path, list(reversed(CLASS_NAMES)))
    assert heatmap_stats.main(arguments(checkpoint, other_classes)) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "model's classes" in errors[0] and "are not those of the val set" in errors[0]
