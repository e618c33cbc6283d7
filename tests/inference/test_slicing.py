"""Sliced inference: window layout, coordinates, seam merge by hand, mosaics sliced against one by one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from centernet.data.tiling import Tile, tile_grid
from centernet.inference.predictor import Detector
from centernet.inference.seam_merge import (
    SeamMergeSettings,
    intersection_over_first,
    merge_block,
    merge_window_detections,
)
from centernet.inference.slicing import (
    ArraySource,
    SliceSettings,
    SliceStats,
    cut_flags,
    predict_sliced,
    prepare_windows,
    to_image_pixels,
)
from tests.inference.test_predictor import checkpoint, random_image  # noqa: F401 - module fixture

CELL = 4  # output stride of the blob model


class BlobModel(nn.Module):
    """A detector of white 4x4 squares on the 4-pixel grid: one heatmap peak per square (logit +10, else
    -10 or lower), offset 0.5 and size 1 cell, so each square's box is exactly its own pixels."""

    size_divisor = CELL

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        bright = F.avg_pool2d(images.mean(1, keepdim=True), CELL)  # +2 white, -2 black (mean .5, std .25)
        heat = 5.0 * bright
        grid = heat.shape
        offset = torch.full((grid[0], 2, grid[2], grid[3]), 0.5)
        return {"heatmap": heat, "size": torch.ones_like(offset), "offset": offset}


def blob_detector(input_size: int = 64, flip: bool = False) -> Detector:
    return Detector(BlobModel(), class_names=["blob"], input_size=(input_size, input_size), channel_order="rgb",
                    mean=[0.5] * 3, std=[0.25] * 3, device=torch.device("cpu"), topk=20, flip=flip)


def blob_image(height: int, width: int, corners: list[tuple[int, int]]) -> np.ndarray:
    image = np.zeros((height, width, 3), dtype=np.uint8)
    for x, y in corners:
        image[y : y + CELL, x : x + CELL] = 255
    return image


def sorted_boxes(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return boxes[np.lexsort((boxes[:, 1], boxes[:, 0]))]


def test_windows_cover_every_pixel_and_stay_inside() -> None:
    for height, width, size, overlap in [(400, 2299, 400, 0.25), (37, 91, 16, 0.5), (10, 10, 64, 0.2),
                                         (2472, 2299, 512, 0.0), (100, 64, 64, 0.9)]:
        tiles = SliceSettings(size=size, overlap=overlap).windows(height, width)
        covered = np.zeros((height, width), dtype=np.int32)
        for tile in tiles:
            assert 0 <= tile.x0 < tile.x1 <= width and 0 <= tile.y0 < tile.y1 <= height
            assert tile.width == min(size, width) and tile.height == min(size, height)
            covered[tile.y0 : tile.y1, tile.x0 : tile.x1] += 1
        assert covered.min() >= 1, (height, width, size, overlap)


def test_window_layout_by_hand() -> None:
    # 400-px windows with 25 % overlap (100 px): stride 300 over 1249 px -> 0, 300, 600 and 849 (moved back).
    tiles = SliceSettings(size=400, overlap=0.25).windows(400, 1249)
    assert [(t.x0, t.x1) for t in tiles] == [(0, 400), (300, 700), (600, 1000), (849, 1249)]
    assert {(t.y0, t.y1) for t in tiles} == {(0, 400)}
    # A window larger than the image: one window, the whole image.
    assert SliceSettings(size=512).windows(300, 200) == [Tile(0, 0, 200, 300)]


def test_bad_settings_name_the_value() -> None:
    with pytest.raises(ValueError, match=r"overlap must be a fraction in \[0, 1\), got 1.0"):
        SliceSettings(size=64, overlap=1.0)
    with pytest.raises(ValueError, match=r"overlap must be a fraction in \[0, 1\), got -0.1"):
        SliceSettings(size=64, overlap=-0.1)
    with pytest.raises(ValueError, match="slice size must be a positive"):
        SliceSettings(size=0)
    with pytest.raises(ValueError, match="slice scale must be > 0"):
        SliceSettings(size=64, scale=0)
    with pytest.raises(ValueError, match=r"slice size 100 is not a multiple of 32, the model's stride; use e.g. 96 or"):
        SliceSettings(size=100).check_divisor(32)
    with pytest.raises(ValueError, match=r"slice size 390 \(size 400 x scale 0.975\) is not a multiple of 32"):
        SliceSettings(size=400, scale=0.975).check_divisor(32)
    SliceSettings(size=400, scale=0.96).check_divisor(32)  # 384


def test_prepare_windows_resizes_and_pads() -> None:
    image = np.arange(30 * 50 * 3, dtype=np.uint8).reshape(30, 50, 3)
    settings = SliceSettings(size=40, scale=0.5)  # network side 20
    tiles = [Tile(0, 0, 40, 30), Tile(10, 0, 50, 30)]
    batch, factors = prepare_windows(ArraySource(image), tiles, settings)
    assert batch.shape == (2, 20, 20, 3) and batch.dtype == np.uint8
    np.testing.assert_allclose(factors, [[0.5, 0.5], [0.5, 0.5]])  # 40 -> 20, 30 -> 15
    assert not batch[:, 15:].any()  # bottom rows padded with zeros
    assert batch[:, :15].any()


def test_to_image_pixels_and_cut_flags_by_hand() -> None:
    tile = Tile(100, 50, 164, 114)
    rows = np.array([[8, 4, 16, 12, 0.9, 0]], dtype=np.float32)  # network pixels at factor 2 (32-px input)
    np.testing.assert_allclose(to_image_pixels(rows, tile, np.array([2.0, 2.0]))[0, :4], [104, 52, 108, 56])
    boxes = np.array([[101, 60, 120, 70],  # reaches the left edge (x0 = 100 > 0): cut
                      [120, 60, 140, 70],  # inside: whole
                      [140, 60, 163, 70],  # reaches the right edge, but x1 = 164 is the image border: whole
                      [120, 100, 140, 113]], dtype=np.float32)  # bottom edge 114 < height 200: cut
    np.testing.assert_array_equal(cut_flags(boxes, tile, 200, 164, margin=2.0), [True, False, False, True])


def test_seam_merge_keeps_the_whole_box_over_a_higher_scoring_cut_one() -> None:
    # Window A [0, 120) saw the object whole; window B [100, 220) saw its right part cut at x = 100.
    whole = [90, 10, 110, 30, 0.6, 0]
    cut = [100, 10, 110, 30, 0.9, 0]  # IoU with the whole box 0.5: a plain NMS at 0.5 would keep both
    other = [150, 10, 170, 30, 0.8, 0]  # another object, whole in window B
    other_class = [100, 10, 110, 30, 0.7, 1]  # same place, other class: kept
    rows = np.array([whole, cut, other, other_class], dtype=np.float32)
    merged = merge_block(rows, np.array([False, True, False, True]), SeamMergeSettings())
    np.testing.assert_allclose(merged, np.array([other, other_class, whole], dtype=np.float32))


def test_seam_merge_fuses_pieces_no_window_saw_whole() -> None:
    # An object wider than the overlap: window A sees [60, 100) of it, window B [80, 140); both cut.
    left = [60, 10, 100, 30, 0.7, 0]
    right = [80, 10, 140, 30, 0.8, 0]  # left lies inside right by 20 / 40 = 0.5 of its area
    merged = merge_block(np.array([left, right], dtype=np.float32), np.array([True, True]), SeamMergeSettings())
    np.testing.assert_allclose(merged, [[60, 10, 140, 30, 0.8, 0]])
    np.testing.assert_allclose(intersection_over_first(np.array([left[:4]]), np.array([right[:4]])), [[0.5]])


def test_block_merge_equals_one_merge() -> None:
    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 3000, (3000, 2))
    sides = rng.uniform(10, 60, (3000, 2))
    rows = np.concatenate([centres - sides / 2, centres + sides / 2, rng.uniform(0.1, 1, (3000, 1)),
                           rng.integers(0, 2, (3000, 1))], axis=1).astype(np.float32)
    cut = rng.uniform(size=3000) < 0.2
    settings = SeamMergeSettings()
    one = merge_window_detections(rows, cut, settings, block=400)
    blocks = merge_window_detections(rows, cut, settings, block=400, max_rows=100)
    np.testing.assert_allclose(sorted_boxes(blocks[:, :4]), sorted_boxes(one[:, :4]))


def test_mosaic_sliced_equals_images_one_by_one() -> None:
    detector = blob_detector()
    rng = np.random.default_rng(1)
    images, mosaic = [], np.zeros((128, 192, 3), dtype=np.uint8)
    expected = []
    for row in range(2):
        for col in range(3):
            corners = [(int(x), int(y)) for x, y in CELL * rng.integers(2, 14, (3, 2))]
            image = blob_image(64, 64, corners)
            images.append(image)
            mosaic[row * 64 : row * 64 + 64, col * 64 : col * 64 + 64] = image
            one = detector(image).above(0.5)
            expected.append(one.boxes + np.array([col, row, col, row]) * 64)
    truth = sorted_boxes(np.concatenate(expected))
    assert len(truth) >= 12  # squares may touch, but each image keeps several
    for overlap in (0.0, 0.25, 0.5):
        sliced = detector.predict_sliced(mosaic, SliceSettings(size=64, overlap=overlap, batch_size=4)).above(0.5)
        np.testing.assert_allclose(sorted_boxes(sliced.boxes), truth, err_msg=f"overlap {overlap}")


def test_object_cut_by_a_seam_is_reported_once_with_its_whole_box() -> None:
    # Windows [0, 64) and [48, 112) (overlap 0.25 of 64): the square at x = 60..64 touches the seam of the
    # first (cut there) and is whole in the second; it is reported once.
    detector = blob_detector()
    image = blob_image(64, 112, [(60, 20), (20, 40), (92, 8)])  # window B starts at 48: on its grid too
    dets = detector.predict_sliced(image, SliceSettings(size=64, overlap=0.25)).above(0.5)
    np.testing.assert_allclose(sorted_boxes(dets.boxes), sorted_boxes(np.array(
        [[60, 20, 64, 24], [20, 40, 24, 44], [92, 8, 96, 12]])))


def test_scaled_windows_map_back_to_image_pixels() -> None:
    # Windows of 128 image px at scale 0.5 (64-px network input): squares of 8 px become 4-px squares.
    detector = blob_detector()
    image = np.zeros((128, 256, 3), dtype=np.uint8)
    for x, y in [(16, 16), (200, 96), (120, 40)]:
        image[y : y + 8, x : x + 8] = 255
    dets = detector.predict_sliced(image, SliceSettings(size=128, overlap=0.25, scale=0.5)).above(0.5)
    np.testing.assert_allclose(sorted_boxes(dets.boxes), sorted_boxes(np.array(
        [[16, 16, 24, 24], [200, 96, 208, 104], [120, 40, 128, 48]])))


def test_window_larger_than_the_image_and_full_image_pass() -> None:
    detector = blob_detector()
    image = blob_image(40, 52, [(8, 8), (40, 28)])
    stats = SliceStats()
    dets = detector.predict_sliced(image, SliceSettings(size=64, full_image=True), stats=stats).above(0.5)
    np.testing.assert_allclose(sorted_boxes(dets.boxes), [[8, 8, 12, 12], [40, 28, 44, 32]], atol=1e-4)
    assert stats.windows == 1 and stats.megapixels == pytest.approx(40 * 52 / 1e6)


def test_flip_and_predict_sliced_through_call() -> None:
    image = blob_image(64, 128, [(8, 8), (100, 44)])
    plain = blob_detector().predict_sliced(image, SliceSettings(size=64, overlap=0.25)).above(0.5)
    flipped = Detector(BlobModel(), class_names=["blob"], input_size=(64, 64), channel_order="rgb",
                       mean=[0.5] * 3, std=[0.25] * 3, device=torch.device("cpu"), topk=20, flip=True,
                       slice=SliceSettings(size=64, overlap=0.25))(image).above(0.5)
    np.testing.assert_allclose(sorted_boxes(flipped.boxes), sorted_boxes(plain.boxes), atol=1e-4)


def test_real_model_windows_equal_the_plain_path(checkpoint: Path) -> None:  # noqa: F811
    # A 64x64 image at input size 64 is warped by the identity: the window path must give the same rows.
    detector = Detector.from_checkpoint(checkpoint, device="cpu", topk=7)
    images = [random_image(64, 64, seed) for seed in range(3)]
    windows = detector.predict_windows(np.stack(images))
    for image, rows in zip(images, windows, strict=True):
        np.testing.assert_allclose(rows, detector(image).rows(), atol=1e-4)
    with pytest.raises(ValueError, match="not a multiple of 32"):
        detector.predict_sliced(images[0], SliceSettings(size=48))


def test_memory_of_a_lazy_source_is_read_window_by_window() -> None:
    class CountingSource:
        height, width = 200, 300

        def __init__(self) -> None:
            self.reads: list[Tile] = []

        def read(self, tile: Tile) -> np.ndarray:
            self.reads.append(tile)
            return np.zeros((tile.height, tile.width, 3), dtype=np.uint8)

    source = CountingSource()
    rows = predict_sliced(source, lambda batch: [np.zeros((0, 6), np.float32)] * len(batch),
                          SliceSettings(size=64, overlap=0.0, batch_size=3), progress=False)
    assert rows.shape == (0, 6)
    assert source.reads == tile_grid(200, 300, 64, 0)
    assert max(t.width * t.height for t in source.reads) == 64 * 64
