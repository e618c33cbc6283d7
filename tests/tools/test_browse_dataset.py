"""tools/browse_dataset.py: panels of augmented inputs with boxes and the rendered target heatmap."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from centernet.config import load_config
from centernet.data.build import build_dataset
from tests.conftest import load_script

browse = load_script("tools/browse_dataset.py")

GAP = 8  # tile_images' default gap between the two panels


def run(config: Path, out: Path, *extra: str) -> list[Path]:
    assert browse.main(["--config", str(config), "--output", str(out), *extra]) == 0
    return sorted(out.glob("*.jpg"))


def test_train_samples_are_written(tiny_config: Callable[..., Path], tmp_path: Path) -> None:
    files = run(tiny_config(), tmp_path / "train", "--split", "train", "--num", "3", "--zoom", "2")
    assert [f.name[:5] for f in files] == ["0000_", "0001_", "0002_"]
    for path in files:
        image = cv2.imread(str(path))
        assert image.shape == (2 * 64, 2 * (64 + GAP + 64), 3)


def test_val_heatmap_panel_peaks_at_the_box_centres(tiny_config: Callable[..., Path], tmp_path: Path) -> None:
    config = tiny_config()
    (path,) = run(config, tmp_path / "val", "--split", "val", "--num", "1")
    panels = cv2.imread(str(path)).astype(np.int32)
    gt_panel, heat_panel = panels[:, :64], panels[:, 64 + GAP :]
    sample = build_dataset(load_config(config), "val")[0]
    boxes = sample["boxes"].numpy()
    assert len(boxes) > 0
    # The heatmap overlay is the colour map of the target (1 at each object's centre cell, ~0 far away):
    # at a centre it differs from the background colour of the same panel.
    background = np.median(heat_panel[:4, :4].reshape(-1, 3), axis=0)
    for x1, y1, x2, y2 in boxes:
        cx, cy = int((x1 + x2) / 2), int((y1 + y2) / 2)
        if 0 <= cx < 64 and 0 <= cy < 64:
            assert np.abs(heat_panel[cy, cx] - background).max() > 60
    assert np.abs(gt_panel - heat_panel).mean() > 10


def test_radius_formula_changes_the_heatmap(tiny_config: Callable[..., Path], tmp_path: Path) -> None:
    config = tiny_config()
    # 256-px inputs: objects span enough output cells for the two radii to differ after int()
    size = "data.input_size=[256,256]"
    (wide,) = run(config, tmp_path / "a", "--split", "val", "--num", "1", size, "target.radius=centernet")
    (narrow,) = run(config, tmp_path / "b", "--split", "val", "--num", "1", size, "target.radius=cornernet")
    heat_wide, heat_narrow = (cv2.imread(str(p)).astype(np.int32)[:, 256 + GAP :] for p in (wide, narrow))
    assert (np.abs(heat_wide - heat_narrow).max(axis=-1) > 30).sum() > 20  # the corrected radius is ~3x smaller


def test_bad_num_is_a_one_line_error(tiny_config: Callable[..., Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert browse.main(["--config", str(tiny_config()), "--output", str(tmp_path), "--num", "0"]) == 1
    assert "--num and --zoom must be >= 1" in capsys.readouterr().err


IDENTITY_WARP = (  # no crop, jitter, flip or colour: the train warp maps the 64 px images onto themselves
    "augment.random_crop=false", "augment.scale_jitter=0.0", "augment.shift_jitter=0.0", "augment.flip_prob=0.0",
    "augment.color_jitter=false", "augment.pca_lighting_std=0.0",
)


def test_albumentations_chain_is_shown(tiny_config: Callable[..., Path], tmp_path: Path) -> None:
    config = tiny_config()
    (plain,) = run(config, tmp_path / "plain", "--num", "1", *IDENTITY_WARP)
    flip = "augment.albumentations=[{type: VerticalFlip, p: 1.0}]"
    (flipped,) = run(config, tmp_path / "flipped", "--num", "1", *IDENTITY_WARP, flip)
    # the heatmap panel (input and its Gaussians) is the plain one upside down, up to JPEG noise; the
    # box panel is not compared: its class-name labels are written upright
    plain_heat, flipped_heat = (cv2.imread(str(p)).astype(np.int32)[:, 64 + GAP :] for p in (plain, flipped))
    mirrored_error = np.abs(flipped_heat - plain_heat[::-1]).mean()
    unchanged_error = np.abs(flipped_heat - plain_heat).mean()
    assert mirrored_error < 0.3 * unchanged_error, (mirrored_error, unchanged_error)


def test_bad_albumentations_argument_is_one_error_line(
    tiny_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = "augment.albumentations=[{type: HueSaturationValue, hue_shift: 10}]"
    assert browse.main(["--config", str(tiny_config()), "--output", str(tmp_path), bad]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]
    assert len(errors) == 1, errors
    assert "augment.albumentations[0].hue_shift: not an argument of HueSaturationValue" in errors[0]
    assert "did you mean 'hue_shift_limit'" in errors[0]
