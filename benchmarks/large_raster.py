"""Peak memory and time of sliced inference on a raster too large for memory (default 20000 x 20000 px).

Writes a tiled, deflate-compressed, georeferenced GeoTIFF made of copies of a real aerial image (the
2299 x 2472 YELL crop that the tree set is cut from; a synthetic texture without ``deepforest``) strip by
strip, never whole, then runs ``tools/demo.py --slice`` on it in a child process and samples the child's
resident memory. The same command on a one-window raster gives the memory of the process, libraries and
model alone; the difference is what the large raster costs (docs/inference.md, "Large images").

    python benchmarks/large_raster.py --checkpoint work_dirs/trees_efficientnet_lite0/checkpoints/best.pth
        [--size 20000] [--work-dir work_dirs/large_raster] [--source IMAGE] [-- DEMO OPTIONS ...]

Results: <work-dir>/large_raster_<YYYYmmdd-HHMMSS>.json (a new file per run) and a line per run on stdout.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make the repository root importable
    sys.path.insert(0, str(REPO))

from benchmarks.synthetic import textured_image  # noqa: E402

STRIP_ROWS = 512  # rows written at a time
BLOCK = 512  # GeoTIFF tile side
SAMPLE_SECONDS = 0.2
MIB = 2**20
DEFAULT_DEMO = ["--slice", "400", "--slice-scale", "0.96", "--overlap", "0.25", "--slice-batch", "8"]
UTM_12N = CRS.from_epsg(32612)
PIXEL_METRES = 0.1


def source_image(path: Path | None) -> np.ndarray:
    """The image the raster repeats: ``path``, else deepforest's YELL crop, else a synthetic texture."""
    if path is None:
        spec = importlib.util.find_spec("deepforest")
        if spec is not None and spec.submodule_search_locations:
            candidate = Path(next(iter(spec.submodule_search_locations))) / "data"
            path = candidate / "2019_YELL_2_528000_4978000_image_crop2.png"
    image = cv2.imread(str(path)) if path is not None and path.is_file() else None
    return image if image is not None else textured_image(np.random.default_rng(0), 2048, 2048)


def write_raster(path: Path, side: int, tile: np.ndarray) -> None:
    """A ``side x side`` RGB GeoTIFF of copies of ``tile``, written strip by strip."""
    profile = {"driver": "GTiff", "height": side, "width": side, "count": 3, "dtype": "uint8", "tiled": True,
               "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate", "BIGTIFF": "IF_SAFER",
               "crs": UTM_12N, "transform": Affine(PIXEL_METRES, 0.0, 500000.0, 0.0, -PIXEL_METRES, 4980000.0)}
    rgb = tile[..., ::-1]
    height, width = rgb.shape[:2]
    with rasterio.open(path, "w", **profile) as dst:
        for y0 in range(0, side, STRIP_ROWS):
            rows = min(STRIP_ROWS, side - y0)
            y_index = (np.arange(y0, y0 + rows) % height)[:, None]
            x_index = (np.arange(side) % width)[None, :]
            dst.write(rgb[y_index, x_index].transpose(2, 0, 1), window=Window(0, y0, side, rows))


def run_with_peak_memory(command: list[str]) -> dict[str, float]:
    """Run ``command``; its wall time and the peak resident memory of it and its children, sampled."""
    start = time.perf_counter()
    process = psutil.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    while process.poll() is None:
        try:
            peak = max(peak, sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]))
        except psutil.Error:
            pass
        time.sleep(SAMPLE_SECONDS)
    _, errors = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{errors[-2000:]}")
    return {"seconds": time.perf_counter() - start, "peak_rss_mib": peak / MIB}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="large_raster.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, type=Path, help="a trained checkpoint (the demo's best.pth)")
    parser.add_argument("--size", type=int, default=20000, help="side of the square raster in pixels")
    parser.add_argument("--work-dir", type=Path, default=REPO / "work_dirs" / "large_raster")
    parser.add_argument("--source", type=Path, default=None, help="image the raster repeats")
    parser.add_argument("demo_options", nargs="*", help="tools/demo.py options (after --)")
    args = parser.parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    tile = source_image(args.source)
    large = args.work_dir / f"mosaic_{args.size}.tif"
    small = args.work_dir / "mosaic_400.tif"
    for path, side in ((large, args.size), (small, 400)):
        if not path.exists():
            write_raster(path, side, tile)
    options = args.demo_options or DEFAULT_DEMO
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results: dict[str, object] = {"demo_options": options, "size": args.size, "raster_bytes": large.stat().st_size}
    for name, path in (("one_window", small), ("large", large)):
        out = args.work_dir / f"demo_{name}_{stamp}"
        command = [sys.executable, str(REPO / "tools" / "demo.py"), "--checkpoint", str(args.checkpoint),
                   "--input", str(path), "--output", str(out), "--no-progress", *options]
        figures = run_with_peak_memory(command)
        figures["detections"] = len(json.loads((out / "detections.json").read_text()))
        results[name] = figures
        print(f"{name}: {path.name}: {figures}", flush=True)
    results["raster_cost_mib"] = results["large"]["peak_rss_mib"] - results["one_window"]["peak_rss_mib"]  # type: ignore[index]
    report = args.work_dir / f"large_raster_{stamp}.json"
    report.write_text(json.dumps(results, indent=1))
    print(f"peak memory beyond the one-window run: {results['raster_cost_mib']:.0f} MiB -> {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
