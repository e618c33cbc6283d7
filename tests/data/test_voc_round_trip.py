"""VOC round trip: XML on disk -> VOCDetection + val transform -> collate -> targets -> decode -> image pixels.

The decoded boxes must be the XML boxes in 0-based pixels (``xmin - 1, ymin - 1, xmax, ymax``) within
half a pixel, for an image that fills the input exactly and for a letter-boxed (padded) one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from centernet.data.collate import collate_detection_batch
from centernet.data.transforms import ValTransform
from centernet.data.voc import VOC_CLASSES, VOCDetection
from centernet.decode import decode_detections, detections_to_image
from centernet.targets import render_targets
from tests.data.test_voc import Obj, write_year

INPUT_SIZE = (64, 96)  # (height, width)
DOWN_RATIO = 4
OUTPUT_SIZE = (INPUT_SIZE[0] // DOWN_RATIO, INPUT_SIZE[1] // DOWN_RATIO)
LOGIT_EPS = 1e-6
TOLERANCE_PX = 0.5
# 60 x 90 (h x w): fills the 64 x 96 input (factor 96 / 90); a difficult person is an ignore region.
# 30 x 60: factor 1.6 gives 48 rows, centred with 8 rows of padding above and below.
IMAGES: dict[str, tuple[int, int, list[Obj]]] = {
    "000010": (60, 90, [("cat", 0, 11, 6, 40, 35), ("dog", 0, 50, 20, 85, 55), ("person", 1, 2, 40, 20, 58)]),
    "000011": (30, 60, [("horse", 0, 5, 5, 30, 25), ("cat", 0, 35, 3, 55, 28)]),
}


def perfect_maps(targets: dict[str, torch.Tensor], num_classes: int) -> dict[str, torch.Tensor]:
    """Head outputs that reproduce the targets: heatmap logits, and size/offset written at each centre."""
    heat = targets["heatmap"].clamp(LOGIT_EPS, 1 - LOGIT_EPS)
    batch, _, height, width = heat.shape
    maps = {"heatmap": torch.log(heat / (1 - heat)), "size": torch.zeros(batch, 2, height * width),
            "offset": torch.zeros(batch, 2, height * width)}
    for b in range(batch):
        for m in torch.nonzero(targets["mask"][b] > 0).flatten().tolist():
            index = int(targets["index"][b, m])
            maps["size"][b, :, index] = targets["size"][b, m]
            maps["offset"][b, :, index] = targets["offset"][b, m]
    maps["size"] = maps["size"].view(batch, 2, height, width)
    maps["offset"] = maps["offset"].view(batch, 2, height, width)
    return maps


def test_xml_to_decoded_boxes_round_trip(tmp_path: Path) -> None:
    root = tmp_path / "VOC2007"
    write_year(root, IMAGES, {"test": list(IMAGES)})
    dataset = VOCDetection(root, "test", transform=ValTransform(input_size=INPUT_SIZE))
    batch = collate_detection_batch([dataset[0], dataset[1]])
    assert batch["images"].shape == (2, 3, *INPUT_SIZE)
    targets = render_targets(
        batch["boxes"] / DOWN_RATIO, batch["labels"], batch["valid"], num_classes=len(VOC_CLASSES),
        output_size=OUTPUT_SIZE, ignore=batch["ignore"],
    )
    maps = perfect_maps(targets, len(VOC_CLASSES))
    dets = decode_detections(maps["heatmap"], maps["size"], maps["offset"], k=10)  # [2, 10, 6]
    for b, (name, (_, _, objects)) in enumerate(IMAGES.items()):
        meta = batch["metas"][b]
        mapped = detections_to_image(dets[b], meta["center"], meta["scale"], OUTPUT_SIZE)
        found = mapped[mapped[:, 4] > 1 - 1e-3]  # the peaks (score 1); the difficult object has none
        expected = [(VOC_CLASSES.index(c), [x1 - 1, y1 - 1, x2, y2]) for c, diff, x1, y1, x2, y2 in objects if not diff]
        assert len(found) == len(expected), name
        found = found[np.argsort(found[:, 0])]
        expected.sort(key=lambda item: item[1][0])
        np.testing.assert_array_equal(found[:, 5], [label for label, _ in expected])
        np.testing.assert_allclose(found[:, :4], [box for _, box in expected], atol=TOLERANCE_PX, rtol=0)
