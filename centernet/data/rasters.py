"""Rasters too large for memory: (Geo)TIFF files read window by window, and detections in map coordinates.

:class:`RasterSource` reads only the window asked for (``rasterio``'s windowed reads: a tiled TIFF is
decoded tile by tile, a striped one strip by strip), so sliced inference over a 20000 x 20000 orthomosaic
holds one batch of windows, never the image (docs/inference.md, "Large images"). rasterio (GDAL) was
chosen over ``tifffile`` because it also reads the georeference (affine transform and CRS) that
:func:`detections_to_geojson` needs, and every compression GDAL knows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from centernet.data.tiling import Tile

RASTER_SUFFIXES = (".tif", ".tiff")
RGB_BANDS = 3
# GDAL's block cache defaults to 5% of the machine's memory (1.2 GB on 24 GB) and fills as windows are read;
# windows are read row by row, so a cache of a few rows of blocks is all that is reused.
DEFAULT_CACHE_MIB = 128


def _rasterio() -> Any:
    try:
        import rasterio
    except ImportError as error:  # an optional reader: only rasters need it
        raise ImportError("reading rasters window by window needs rasterio (pip install rasterio)") from error
    return rasterio


def is_raster(path: str | Path) -> bool:
    """Whether ``path`` names a TIFF file (read lazily by :class:`RasterSource`)."""
    return Path(path).suffix.lower() in RASTER_SUFFIXES


class RasterSource:
    """A 3-band uint8 (Geo)TIFF read window by window (an ``ImageSource`` of :mod:`centernet.inference.slicing`).

    Args:
        path: the raster file.
        cache_mib: GDAL's block cache while the raster is open (``GDAL_CACHEMAX``), in MiB.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a readable raster, not 3 bands (RGB), or not 8-bit; the message names the file.
    """

    def __init__(self, path: str | Path, *, cache_mib: int = DEFAULT_CACHE_MIB) -> None:
        rasterio = _rasterio()
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"raster {self.path} does not exist")
        self._env = rasterio.Env(GDAL_CACHEMAX=int(cache_mib) * 2**20)
        self._env.__enter__()
        try:
            self._dataset = rasterio.open(self.path)
        except rasterio.errors.RasterioIOError as error:
            self._env.__exit__(None, None, None)
            raise ValueError(f"cannot read raster {self.path}: {error}") from None
        bands, dtypes = self._dataset.count, set(self._dataset.dtypes)
        if bands != RGB_BANDS:
            self.close()
            raise ValueError(f"raster {self.path} has {bands} band{'s' if bands != 1 else ''}; expected 3 (RGB)"
                             + (": drop the alpha or extra bands first" if bands > RGB_BANDS else ""))
        if dtypes != {"uint8"}:
            self.close()
            raise ValueError(f"raster {self.path} holds {', '.join(sorted(dtypes))} pixels; expected uint8 "
                             "(scale it to 0-255 first)")

    @property
    def height(self) -> int:
        return int(self._dataset.height)

    @property
    def width(self) -> int:
        return int(self._dataset.width)

    @property
    def transform(self) -> Any:
        """The affine pixel -> map transform (``affine.Affine``)."""
        return self._dataset.transform

    @property
    def crs(self) -> Any:
        """The coordinate reference system (``rasterio.crs.CRS``), or ``None``."""
        return self._dataset.crs

    @property
    def georeferenced(self) -> bool:
        """Whether the raster has a coordinate system and a transform other than the identity."""
        return self.crs is not None and not self.transform.is_identity

    def read(self, tile: Tile) -> np.ndarray:
        """uint8 BGR ``[tile.height, tile.width, 3]``: the pixels of ``tile`` only.

        Raises:
            ValueError: the file cannot be decoded there (truncated or corrupt); names the file and window.
        """
        rasterio = _rasterio()
        window = rasterio.windows.Window(tile.x0, tile.y0, tile.width, tile.height)
        try:
            bands = self._dataset.read((3, 2, 1), window=window)  # [3, h, w] in B, G, R order
        except rasterio.errors.RasterioIOError as error:
            raise ValueError(f"raster {self.path}: cannot read window x {tile.x0}-{tile.x1}, y {tile.y0}-{tile.y1} "
                             f"(truncated or corrupt file?): {error}") from None
        return np.ascontiguousarray(bands.transpose(1, 2, 0))

    def read_overview(self, max_side: int) -> tuple[np.ndarray, float]:
        """The whole raster shrunk so that its longer side is at most ``max_side`` (GDAL reads it decimated).

        Returns:
            ``(image, factor)``: uint8 BGR ``[h, w, 3]`` and overview pixels per raster pixel.
        """
        factor = min(1.0, max_side / max(self.height, self.width))
        shape = (RGB_BANDS, max(1, round(self.height * factor)), max(1, round(self.width * factor)))
        bands = self._dataset.read((3, 2, 1), out_shape=shape)
        return np.ascontiguousarray(bands.transpose(1, 2, 0)), factor

    def close(self) -> None:
        if not self._dataset.closed:
            self._dataset.close()
            self._env.__exit__(None, None, None)

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def detections_to_geojson(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str], transform: Any, crs: Any
) -> dict[str, Any]:
    """A GeoJSON ``FeatureCollection`` of the boxes as polygons in the raster's coordinate system.

    Args:
        boxes: float ``[K, 4]`` ``[x1, y1, x2, y2]`` in raster pixels.
        scores: ``[K]`` scores.
        labels: ``[K]`` class indices into ``class_names``.
        class_names: the model's class names.
        transform: the raster's affine pixel -> map transform.
        crs: the raster's coordinate system; written as the (pre-RFC 7946) ``crs`` member that GDAL and
            QGIS read, since the coordinates are not longitude/latitude unless the raster's are.

    Returns:
        The GeoJSON dict; each feature's properties hold ``score``, ``label``, ``category_name`` and the
        pixel box ``bbox_pixels`` ``[x, y, w, h]``.
    """
    features = []
    for box, score, label in zip(np.asarray(boxes).tolist(), np.asarray(scores).tolist(),
                                 np.asarray(labels).tolist(), strict=True):
        x1, y1, x2, y2 = box
        ring = [transform @ corner for corner in ((x1, y1), (x2, y1), (x2, y2), (x1, y2), (x1, y1))]
        features.append({
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [[[float(x), float(y)] for x, y in ring]]},
            "properties": {"score": float(score), "label": int(label), "category_name": class_names[int(label)],
                           "bbox_pixels": [x1, y1, x2 - x1, y2 - y1]},
        })
    collection: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    if crs is not None:
        collection["crs"] = {"type": "name", "properties": {"name": crs.to_string()}}
    return collection
