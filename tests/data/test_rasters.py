"""Rasters read window by window (real GeoTIFF files written with rasterio), GeoJSON in map coordinates,
and tools/demo.py --slice on a raster."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from centernet.data.rasters import RasterSource, detections_to_geojson, is_raster
from centernet.data.tiling import Tile
from centernet.inference.slicing import SliceSettings
from tests.conftest import load_script
from tests.inference.test_predictor import tiny_config, write_checkpoint
from tests.inference.test_slicing import blob_detector, blob_image, sorted_boxes

demo = load_script("tools/demo.py")

ORIGIN = (500000.0, 4980000.0)  # UTM zone 12N metres of the top-left corner
PIXEL = 0.1  # metres per pixel
UTM_12N = CRS.from_epsg(32612)


def write_raster(path: Path, bgr: np.ndarray, *, georeferenced: bool = True, bands: int | None = None,
                 tiled: bool = True) -> Path:
    """``bgr`` [H, W, 3] as an RGB (Geo)TIFF (``bands`` 1 or 4 writes that many bands instead)."""
    rgb = bgr[..., ::-1].transpose(2, 0, 1)
    if bands == 1:
        rgb = rgb[:1]
    elif bands == 4:
        rgb = np.concatenate([rgb, np.full_like(rgb[:1], 255)])
    profile = {"driver": "GTiff", "height": bgr.shape[0], "width": bgr.shape[1], "count": rgb.shape[0],
               "dtype": "uint8", "compress": "deflate"}
    if tiled:
        profile.update(tiled=True, blockxsize=32, blockysize=32)
    if georeferenced:
        profile.update(crs=UTM_12N, transform=Affine(PIXEL, 0.0, ORIGIN[0], 0.0, -PIXEL, ORIGIN[1]))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(rgb)
    return path


def test_windows_read_the_same_pixels_as_the_array(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    path = write_raster(tmp_path / "scene.tif", image)
    assert is_raster(path) and is_raster("A.TIFF") and not is_raster("a.png")
    with RasterSource(path) as raster:
        assert (raster.height, raster.width) == (70, 90) and raster.georeferenced
        for tile in (Tile(0, 0, 90, 70), Tile(33, 5, 65, 37), Tile(80, 60, 90, 70)):
            np.testing.assert_array_equal(raster.read(tile), image[tile.y0 : tile.y1, tile.x0 : tile.x1])
        overview, factor = raster.read_overview(45)
        assert overview.shape == (35, 45, 3) and factor == pytest.approx(0.5)


def test_sliced_detection_in_a_raster_equals_the_array_in_memory(tmp_path: Path) -> None:
    image = blob_image(96, 160, [(8, 8), (60, 20), (100, 72), (148, 40)])
    path = write_raster(tmp_path / "blobs.tif", image)
    settings = SliceSettings(size=64, overlap=0.25, batch_size=2)
    detector = blob_detector()
    in_memory = detector.predict_sliced(image, settings).above(0.5)
    with RasterSource(path) as raster:
        lazy = detector.predict_sliced(raster, settings).above(0.5)
    np.testing.assert_allclose(sorted_boxes(lazy.boxes), sorted_boxes(in_memory.boxes))
    np.testing.assert_allclose(sorted_boxes(lazy.boxes), sorted_boxes(np.array(
        [[8, 8, 12, 12], [60, 20, 64, 24], [100, 72, 104, 76], [148, 40, 152, 44]])))


def test_geojson_corners_by_hand() -> None:
    transform = Affine(PIXEL, 0.0, ORIGIN[0], 0.0, -PIXEL, ORIGIN[1])
    geojson = detections_to_geojson(np.array([[10.0, 20.0, 30.0, 40.0]]), np.array([0.9]), np.array([1]),
                                    ["a", "b"], transform, UTM_12N)
    assert geojson["crs"] == {"type": "name", "properties": {"name": "EPSG:32612"}}
    (feature,) = geojson["features"]
    # x = 500000 + col * 0.1, y = 4980000 - row * 0.1 (north up)
    np.testing.assert_allclose(feature["geometry"]["coordinates"][0], [
        [500001.0, 4979998.0], [500003.0, 4979998.0], [500003.0, 4979996.0], [500001.0, 4979996.0],
        [500001.0, 4979998.0]])
    assert feature["properties"] == {"score": 0.9, "label": 1, "category_name": "b", "bbox_pixels": [10, 20, 20, 20]}


@pytest.mark.parametrize(("bands", "message"), [(1, "has 1 band; expected 3 (RGB)"),
                                                (4, "has 4 bands; expected 3 (RGB): drop the alpha")])
def test_band_counts_other_than_three_are_refused(tmp_path: Path, bands: int, message: str) -> None:
    path = write_raster(tmp_path / "bands.tif", np.zeros((8, 8, 3), np.uint8), bands=bands)
    with pytest.raises(ValueError, match=re.escape(f"raster {path} {message}")):
        RasterSource(path)


def test_truncated_raster_names_the_file_and_window(tmp_path: Path) -> None:
    image = np.random.default_rng(1).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    path = write_raster(tmp_path / "cut.tif", image, tiled=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut.tif"):
        with RasterSource(path) as raster:
            raster.read(Tile(0, 96, 128, 128))
    (tmp_path / "text.tif").write_text("not a tiff")
    with pytest.raises(ValueError, match=r"cannot read raster .*text.tif"):
        RasterSource(tmp_path / "text.tif")


def test_demo_slices_a_geotiff_and_writes_geojson(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = write_checkpoint(tmp_path / "tiny.pth", tiny_config())
    image = np.random.default_rng(2).integers(0, 256, (100, 150, 3), dtype=np.uint8)
    path = write_raster(tmp_path / "scene.tif", image)
    out = tmp_path / "out"
    assert demo.main(["--checkpoint", str(checkpoint), "--input", str(path), "--output", str(out), "--device", "cpu",
                      "--no-progress", "--score-thr", "0", "--slice", "64", "--overlap", "0.25"]) == 0
    records = json.loads((out / "detections.json").read_text())
    features = json.loads((out / "scene.geojson").read_text())["features"]
    assert len(records) == len(features) > 0
    for record, feature in zip(records, features, strict=True):
        x, y, w, h = record["bbox"]
        ring = np.array(feature["geometry"]["coordinates"][0])
        np.testing.assert_allclose(ring[0], [ORIGIN[0] + x * PIXEL, ORIGIN[1] - y * PIXEL], atol=1e-3)
        np.testing.assert_allclose(ring[2], [ORIGIN[0] + (x + w) * PIXEL, ORIGIN[1] - (y + h) * PIXEL], atol=1e-3)
    assert (out / "scene_preview.jpg").is_file()
    bad = write_raster(tmp_path / "gray.tif", np.zeros((8, 8, 3), np.uint8), bands=1)
    assert demo.main(["--checkpoint", str(checkpoint), "--input", str(bad), "--output", str(tmp_path / "o2"),
                      "--device", "cpu", "--no-progress", "--slice", "64"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "gray.tif has 1 band; expected 3 (RGB)" in errors[0]
