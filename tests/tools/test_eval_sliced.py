"""tools/eval.py on large images: a mosaic of the tiny shapes val images scored sliced, next to the tiles."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from centernet.config import load_config
from centernet.engine.checkpoint import save_checkpoint
from centernet.inference.sliced_runner import val_set_slices
from centernet.models.build import build_model
from tests.conftest import load_script

eval_tool = load_script("tools/eval.py")

TILE = 64  # the tiny shapes images and the tiny config's input size


def write_mosaic(shapes: Path, out: Path) -> Path:
    """The 4 val images of the tiny shapes set as one 128x128 image (2 x 2), with their boxes moved."""
    data = json.loads((shapes / "annotations" / "instances_val.json").read_text())
    mosaic = np.zeros((2 * TILE, 2 * TILE, 3), dtype=np.uint8)
    annotations = []
    for index, image in enumerate(sorted(data["images"], key=lambda i: i["id"])):
        dx, dy = TILE * (index % 2), TILE * (index // 2)
        mosaic[dy : dy + TILE, dx : dx + TILE] = cv2.imread(str(shapes / "val" / image["file_name"]))
        for ann in data["annotations"]:
            if ann["image_id"] == image["id"]:
                x, y, w, h = ann["bbox"]
                annotations.append({**ann, "id": len(annotations) + 1, "image_id": 1, "bbox": [x + dx, y + dy, w, h]})
    out.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(out / "mosaic.png"), mosaic)
    ann_file = out / "mosaic.json"
    ann_file.write_text(json.dumps({"images": [{"id": 1, "file_name": "mosaic.png", "height": 2 * TILE,
                                                "width": 2 * TILE}],
                                    "annotations": annotations, "categories": data["categories"]}))
    return ann_file


@pytest.fixture
def setup(tiny_config: Callable[..., Path], tiny_shapes: Path, tmp_path: Path) -> tuple[Path, Path]:
    ann_file = write_mosaic(tiny_shapes, tmp_path / "mosaic")
    # YAML keeps the last of two `data:` keys, so this section repeats what the tiny config's data holds
    config = tiny_config(f"""
data:
  train: {{type: coco, ann_file: {tiny_shapes}/annotations/instances_train.json, img_dir: {tiny_shapes}/train}}
  input_size: [{TILE}, {TILE}]
  batch_size: 4
  workers: 0
  val:
    - {{name: tiles, type: coco, ann_file: {tiny_shapes}/annotations/instances_val.json, img_dir: {tiny_shapes}/val}}
    - {{name: mosaic, type: coco, ann_file: {ann_file}, img_dir: {ann_file.parent},
       slice: {{size: {TILE}, overlap: 0.0}}}}
eval: {{topk: 7, max_dets: 40}}
""")
    torch.manual_seed(0)
    model = build_model(load_config(config), 5)
    with torch.no_grad():  # random heads: distinct scores (the initial heatmap head predicts its prior everywhere)
        for name, param in model.named_parameters():
            if name.startswith("head"):
                param.normal_(0.0, 0.1)
    checkpoint = tmp_path / "tiny.pth"
    save_checkpoint({"model": model.state_dict()}, checkpoint)
    return config, checkpoint


def test_mosaic_scored_sliced_holds_the_tiles_detections(setup: tuple[Path, Path], tmp_path: Path) -> None:
    config, checkpoint = setup
    out = tmp_path / "eval"
    assert eval_tool.main(["--config", str(config), "--checkpoint", str(checkpoint), "--out-dir", str(out),
                           "--no-progress"]) == 0
    tiles = json.loads((out / "tiles" / "detections.json").read_text())
    mosaic = json.loads((out / "mosaic" / "detections.json").read_text())
    metrics = json.loads((out / "mosaic" / "metrics.json").read_text())
    assert metrics["slice"]["size"] == TILE
    assert json.loads((out / "tiles" / "metrics.json").read_text())["slice"] is None
    order = {image_id: i for i, image_id in enumerate(sorted({r["image_id"] for r in tiles}))}
    shifted = []
    for r in tiles:  # each tile's detections moved to where the tile lies in the mosaic
        index = order[r["image_id"]]
        x, y, w, h = r["bbox"]
        shifted.append((r["category_id"], r["score"], [x + TILE * (index % 2), y + TILE * (index // 2), w, h]))
    # Windows of 64 px without overlap are exactly the tiles: every mosaic detection is a tile's detection
    # in mosaic pixels (the seam merge only removes some), and at most max_dets of them are kept.
    assert 0 < len(mosaic) <= 40
    for r in mosaic:
        assert any(category == r["category_id"] and abs(score - r["score"]) < 1e-5
                   and np.allclose(box, r["bbox"], atol=1e-3) for category, score, box in shifted), r
    assert len(mosaic) >= 0.75 * min(40, len(tiles))


def test_slice_on_the_command_line_overrides_and_names_the_folder(setup: tuple[Path, Path]) -> None:
    config, checkpoint = setup
    code = eval_tool.main(["--config", str(config), "--checkpoint", str(checkpoint), "--val-set", "tiles",
                           "--slice", "32", "--overlap", "0.5", "--no-progress"])
    assert code == 0
    out = checkpoint.parent / "eval_tiny_slice32_o0.5" / "tiles"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["slice"] == {"size": 32, "overlap": 0.5, "scale": 1.0, "full_image": False, "batch_size": 0,
                                "merge_iou": 0.5, "merge_ios": 0.5}
    for record in json.loads((out / "detections.json").read_text()):
        x, y, w, h = record["bbox"]
        assert -TILE / 2 < x and x + w < 1.5 * TILE and -TILE / 2 < y and y + h < 1.5 * TILE  # image pixels


def test_bad_slice_values_are_one_line_errors(setup: tuple[Path, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    config, checkpoint = setup
    for extra, message in [(["--slice", "48"], "slice size 48 is not a multiple of 32, the model's stride"),
                           (["--slice", "64", "--overlap", "1"], r"overlap must be a fraction in [0, 1), got 1.0")]:
        assert eval_tool.main(["--config", str(config), "--checkpoint", str(checkpoint), "--out-dir",
                               str(tmp_path / "e"), "--no-progress", *extra]) == 1
        errors = [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]
        assert len(errors) == 1 and message in errors[0], errors


def test_val_set_slices_read_each_set_then_eval_slice(setup: tuple[Path, Path]) -> None:
    config, _ = setup
    slices = val_set_slices(load_config(config))
    assert slices["tiles"] is None and slices["mosaic"] is not None and slices["mosaic"].size == TILE
    both = val_set_slices(load_config(config, ["eval.slice.size=32"]))
    assert both["tiles"] is not None and both["tiles"].size == 32 and both["mosaic"].size == TILE
    with pytest.raises(ValueError, match=r"eval.slice: overlap must be a fraction in \[0, 1\), got 2"):
        val_set_slices(load_config(config, ["eval.slice.size=32", "eval.slice.overlap=2"]))


def test_detector_takes_eval_slice_from_the_config(setup: tuple[Path, Path], tmp_path: Path) -> None:
    from centernet.engine.checkpoint import load_checkpoint
    from centernet.inference.predictor import Detector

    config, bare = setup
    checkpoint = tmp_path / "named.pth"
    save_checkpoint({**load_checkpoint(bare), "class_names": ["circle", "square", "triangle", "cross", "ellipse"]},
                    checkpoint)
    cfg = load_config(config, ["eval.slice.size=32", "eval.slice.overlap=0.5"])
    sliced = Detector.from_checkpoint(checkpoint, config=cfg, device="cpu")
    assert sliced.slice is not None and (sliced.slice.size, sliced.slice.overlap) == (32, 0.5)
    assert Detector.from_checkpoint(checkpoint, config=cfg, device="cpu", config_slice=False).slice is None
    assert Detector.from_checkpoint(checkpoint, config=load_config(config), device="cpu").slice is None
