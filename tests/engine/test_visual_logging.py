"""TensorBoard training images: written to a real event file and read back with EventAccumulator."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from centernet.engine.visual_logging import VISUAL_TAG, log_training_visuals, should_log_visuals
from centernet.targets import render_targets
from centernet.utils.visualize import GROUND_TRUTH_COLOUR, PREDICTION_COLOUR

SIZE = 64
DOWN = 4
GAP = 8  # tile_images' default gap


def hand_made_batch(head: str = "size_offset") -> tuple[dict, dict, dict]:
    """One grey 64x64 image, one ground-truth box, and maps with one confident peak elsewhere."""
    images = torch.full((1, 3, SIZE, SIZE), 90, dtype=torch.uint8)
    boxes = torch.tensor([[[4.0, 40.0, 20.0, 60.0]]])
    batch = {"images": images, "boxes": boxes, "labels": torch.tensor([[1]]), "valid": torch.tensor([[True]])}
    grid = SIZE // DOWN
    heat = torch.full((1, 2, grid, grid), -8.0)
    heat[0, 0, 10, 8] = 5.0  # class 0 at cell (x=8, y=10): box centre (32, 40) on the input
    size = torch.zeros(1, 2, grid, grid)
    size[0, :, 10, 8] = torch.tensor([4.0, 4.0])  # 16 x 16 input pixels -> box [24, 32, 40, 48]
    outputs = {"heatmap": heat, "size": size, "offset": torch.zeros(1, 2, grid, grid)}
    if head == "ltrb":  # the same box as distances from the cell's input pixel (32, 40) to its sides
        ltrb = torch.zeros(1, 4, grid, grid)
        ltrb[0, :, 10, 8] = torch.tensor([8.0, 8.0, 8.0, 8.0])
        outputs = {"heatmap": heat, "ltrb": ltrb}
    targets = render_targets(boxes / DOWN, batch["labels"], batch["valid"], num_classes=2, output_size=(grid, grid))
    return batch, outputs, targets


@pytest.mark.parametrize("head", ["size_offset", "ltrb"])
def test_visuals_round_trip_through_an_event_file(head: str, tmp_path: Path) -> None:
    batch, outputs, targets = hand_made_batch(head)
    writer = SummaryWriter(log_dir=str(tmp_path))
    written = log_training_visuals(writer, step=7, batch=batch, outputs=outputs, targets=targets,
                                   channel_order="rgb", down_ratio=DOWN)
    writer.close()
    assert written == 1
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    assert events.Tags()["images"] == [f"{VISUAL_TAG}/0"]
    (record,) = events.Images(f"{VISUAL_TAG}/0")
    assert record.step == 7 and (record.height, record.width) == (SIZE, 3 * SIZE + 2 * GAP)
    rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(record.encoded_image_string, np.uint8), cv2.IMREAD_COLOR),
                       cv2.COLOR_BGR2RGB)
    boxes_panel = rgb[:, :SIZE].astype(int)
    # predicted box [24, 32, 40, 48]: its bottom edge; ground truth [4, 40, 20, 60]: its bottom edge (the
    # legend covers the top rows)
    assert np.abs(boxes_panel[48, 32] - np.array(PREDICTION_COLOUR)[::-1]).max() <= 2
    assert np.abs(boxes_panel[60, 12] - np.array(GROUND_TRUTH_COLOUR)[::-1]).max() <= 2
    # predicted heatmap panel is hot at the predicted centre, the target panel at the ground-truth centre
    predicted, target = rgb[:, SIZE + GAP : 2 * SIZE + GAP].astype(int), rgb[:, 2 * SIZE + 2 * GAP :].astype(int)
    assert np.abs(predicted[42, 34] - predicted[50, 12]).max() > 40
    assert np.abs(target[50, 12] - target[42, 34]).max() > 40


def test_no_writer_and_interval() -> None:
    batch, outputs, targets = hand_made_batch()
    assert log_training_visuals(None, step=0, batch=batch, outputs=outputs, targets=targets, channel_order="bgr",
                                down_ratio=DOWN) == 0
    assert [should_log_visuals(i, 3) for i in range(5)] == [True, False, False, True, False]
    assert not any(should_log_visuals(i, 0) for i in range(5))
