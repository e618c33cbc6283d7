"""Generate the synthetic "shapes" detection set in COCO format (the project's default demo data).

Each image holds up to a few coloured shapes (circle, square, triangle, cross, ellipse; filled or
outlined, randomly rotated) on a cluttered background (a textured colour gradient, faint lines,
pixel noise). Every box is the exact pixel extent of the whole drawn shape, also where another shape
partly covers it; placements that would hide more than ``max_hidden_fraction`` of an earlier shape
are rejected. Shape colours always contrast with the background and with the shapes they overlap.

Layout written under ``out_dir``::

    train/000001.jpg ...            val/000001.jpg ...
    annotations/instances_train.json  annotations/instances_val.json
    .complete.json                  (marker with the parameters, written last)

Usage::

    python datasets/make_shapes.py --out datasets/data/shapes [--num-train 2000] [--num-val 200]
        [--size 128] [--seed 0]

Every image is drawn from its own generator seeded by ``(seed, split, index)``, so the output is the
same byte for byte for a given seed, and image ``i`` does not depend on how many images are made.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

logger = logging.getLogger("make_shapes")

CLASS_NAMES = ("circle", "square", "triangle", "cross", "ellipse")
SPLITS = {"train": 0, "val": 1}  # split name -> code mixed into the per-image seed
MARKER_NAME = ".complete.json"
FORMAT_VERSION = 2
DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "shapes"

MIN_SIZE_PX = 10.0  # smallest shape diameter (circumscribed circle), pixels
MAX_SIZE_FRACTION = 0.4  # largest shape diameter as a fraction of the shorter image side
OUTLINE_MIN_SIZE_PX = 16.0  # smaller shapes are always filled
OUTLINE_PROB = 0.25
OUTLINE_THICKNESS_FRACTION = 0.1  # outline thickness as a fraction of the diameter
PLACEMENT_ATTEMPTS = 20
CIRCLE_POINTS = 64
ELLIPSE_ASPECT = (0.35, 0.55)  # minor / major axis (clearly not a circle)
CROSS_ARM_HALF_WIDTH = 0.3  # relative to the arm half-length
BG_LEVEL = (50, 206)  # range of the background base colour per channel
BG_GRADIENT_HALF = 20  # max per-channel deviation of the gradient from the background mean
BG_TEXTURE_AMP = 12  # max per-channel amplitude of the low-frequency texture
BG_TEXTURE_GRID = 4  # texture control grid (cells per side)
LINE_COUNT_MAX = 6
LINE_COLOR_DELTA = 30  # max per-channel deviation of clutter lines from the background mean
NOISE_STD = 3.0
MIN_BG_CONTRAST = 100  # min max-channel distance of a shape colour from the background mean
MIN_BG_CONTRAST_L2 = 140.0
MIN_SHAPE_CONTRAST = 60  # min max-channel distance between overlapping shapes
COLOR_ATTEMPTS = 100
POLY_SHIFT = 4  # fixed-point bits for sub-pixel polygon vertices
JPEG_QUALITY = 95


def _unit_polygon(name: str, rng: np.random.Generator) -> np.ndarray:
    """Vertices ``[K, 2]`` of shape ``name`` inside the unit circle, randomly rotated."""
    t: np.ndarray
    pts: np.ndarray
    if name == "circle":
        t = np.linspace(0.0, 2.0 * math.pi, CIRCLE_POINTS, endpoint=False)
        return np.stack([np.cos(t), np.sin(t)], axis=1)
    if name == "square":
        t = np.arange(4) * (math.pi / 2) + math.pi / 4
        pts = np.stack([np.cos(t), np.sin(t)], axis=1)
        period = math.pi / 2
    elif name == "triangle":
        t = np.arange(3) * (2 * math.pi / 3) - math.pi / 2
        pts = np.stack([np.cos(t), np.sin(t)], axis=1)
        period = 2 * math.pi / 3
    elif name == "cross":
        w = CROSS_ARM_HALF_WIDTH
        arm = np.array([[1, -w], [1, w], [w, w]])  # one arm and the inner corner after it
        pts = np.concatenate([arm @ _rotation(k * math.pi / 2).T for k in range(4)])
        pts /= np.hypot(1.0, w)
        period = math.pi / 2
    elif name == "ellipse":
        t = np.linspace(0.0, 2.0 * math.pi, CIRCLE_POINTS, endpoint=False)
        pts = np.stack([np.cos(t), rng.uniform(*ELLIPSE_ASPECT) * np.sin(t)], axis=1)
        period = math.pi
    else:
        raise ValueError(f"unknown shape {name!r}; expected one of {CLASS_NAMES}")
    return pts @ _rotation(rng.uniform(0.0, period)).T


def _rotation(angle: float) -> np.ndarray:
    """2x2 rotation matrix."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def _background(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(float32 [H, W, 3] background, [3] its mean colour)``: gradient + texture + lines."""
    mean = rng.integers(BG_LEVEL[0], BG_LEVEL[1], size=3).astype(np.float32)
    delta = rng.uniform(-BG_GRADIENT_HALF, BG_GRADIENT_HALF, size=3).astype(np.float32)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = xs * math.cos(angle) + ys * math.sin(angle)
    ramp = 2.0 * (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0) - 1.0  # [-1, 1]
    image = mean + ramp[..., None] * delta
    grid = rng.uniform(-1.0, 1.0, size=(BG_TEXTURE_GRID, BG_TEXTURE_GRID, 3)).astype(np.float32)
    texture = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    image += np.clip(texture, -1.0, 1.0) * BG_TEXTURE_AMP
    for _ in range(rng.integers(0, LINE_COUNT_MAX + 1)):
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        color = (mean + rng.uniform(-LINE_COLOR_DELTA, LINE_COLOR_DELTA, size=3)).tolist()
        cv2.line(image, p1, p2, color, int(rng.integers(1, 3)), cv2.LINE_AA)
    return image, mean


def _pick_color(rng: np.random.Generator, bg_mean: np.ndarray, others: list[np.ndarray]) -> np.ndarray:
    """A colour ``[3]`` (int) far from the background mean and from the overlapped shapes' colours."""
    for _ in range(COLOR_ATTEMPTS):
        color = rng.integers(0, 256, size=3)
        diff = np.abs(color - bg_mean)
        if diff.max() < MIN_BG_CONTRAST or np.linalg.norm(diff) < MIN_BG_CONTRAST_L2:
            continue
        if all(np.abs(color - o).max() >= MIN_SHAPE_CONTRAST for o in others):
            return color
    return np.where(bg_mean < 128, 255, 0)  # per-channel extreme farthest from the background


def _draw_masks(
    poly: np.ndarray, thickness: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise polygon ``[K, 2]``: ``(drawn pixels, full extent)`` bool masks ``[H, W]``.

    ``thickness`` 0 fills the polygon; otherwise only the outline is drawn and the full extent is the
    filled polygon plus the outline.
    """
    pts = [np.round(poly * (1 << POLY_SHIFT)).astype(np.int32)]
    full = np.zeros((height, width), np.uint8)
    cv2.fillPoly(full, pts, 1, cv2.LINE_8, POLY_SHIFT)
    if thickness == 0:
        return full.astype(bool), full.astype(bool)
    drawn = np.zeros_like(full)
    cv2.polylines(drawn, pts, True, 1, thickness, cv2.LINE_8, POLY_SHIFT)
    return drawn.astype(bool), (drawn | full).astype(bool)


def render_image(
    rng: np.random.Generator, height: int, width: int, *, max_objects: int, empty_fraction: float,
    max_hidden_fraction: float,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draw one image and its objects.

    Args:
        rng: the image's generator (all random draws come from it).
        height, width: image size in pixels.
        max_objects: the object count is uniform in ``[1, max_objects]`` (or 0, see below).
        empty_fraction: probability of an image without objects.
        max_hidden_fraction: reject placements hiding more than this fraction of an earlier shape.

    Returns:
        ``(image, objects)``: ``uint8 [H, W, 3]`` BGR image; per object a dict with ``label`` (index
        into ``CLASS_NAMES``), ``box`` ``[x1, y1, x2, y2]`` int pixel-edge coordinates of the full
        shape, ``area`` (pixels of the full shape), ``color`` (BGR), ``filled`` and ``visible``
        (fraction of its drawn pixels left visible).
    """
    image, bg_mean = _background(rng, height, width)
    count = 0 if rng.random() < empty_fraction else int(rng.integers(1, max_objects + 1))
    owner = np.full((height, width), -1, np.int32)  # index of the shape on top of each pixel
    objects: list[dict[str, Any]] = []
    drawn_px: list[int] = []
    max_size = MAX_SIZE_FRACTION * min(height, width)
    for _ in range(count):
        label = int(rng.integers(len(CLASS_NAMES)))
        size = float(np.exp(rng.uniform(math.log(MIN_SIZE_PX), math.log(max_size))))
        outlined = size >= OUTLINE_MIN_SIZE_PX and rng.random() < OUTLINE_PROB
        thickness = max(2, round(size * OUTLINE_THICKNESS_FRACTION)) if outlined else 0
        for _attempt in range(PLACEMENT_ATTEMPTS):
            poly = _unit_polygon(CLASS_NAMES[label], rng) * (size / 2.0)
            margin = thickness / 2.0 + 1.0
            lo, hi = -poly.min(axis=0) + margin, np.array([width - 1, height - 1]) - poly.max(axis=0) - margin
            if np.any(hi < lo):
                break  # cannot fit; give up on this object
            poly = poly + rng.uniform(lo, hi)
            drawn, full = _draw_masks(poly, thickness, height, width)
            covered = owner[drawn]
            hidden = np.bincount(covered[covered >= 0], minlength=len(objects))
            if any(drawn_px[j] - objects[j]["visible_px"] + hidden[j] > max_hidden_fraction * drawn_px[j]
                   for j in range(len(objects))):
                continue
            under = [objects[j]["color_arr"] for j in np.unique(covered[covered >= 0])]
            color = _pick_color(rng, bg_mean, under)
            for j in range(len(objects)):
                objects[j]["visible_px"] -= int(hidden[j])
            owner[drawn] = len(objects)
            image[drawn] = color
            ys, xs = np.nonzero(full)
            objects.append({
                "label": label, "box": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
                "area": int(full.sum()), "color_arr": color, "filled": not outlined,
                "visible_px": int(drawn.sum()),
            })
            drawn_px.append(int(drawn.sum()))
            break
    image += rng.normal(0.0, NOISE_STD, size=image.shape).astype(np.float32)
    out = np.clip(np.round(image), 0, 255).astype(np.uint8)
    for obj, total in zip(objects, drawn_px):
        obj["color"] = [int(c) for c in obj.pop("color_arr")]
        obj["visible"] = round(obj.pop("visible_px") / total, 4)
    return out, objects


def _write_split(
    out_dir: Path, split: str, num_images: int, params: dict[str, Any], *, progress: bool
) -> Path:
    """Draw and write one split's images and its ``annotations/instances_<split>.json``; return the latter."""
    height, width = params["image_size"]
    ext = params["image_format"]
    img_dir = out_dir / split
    img_dir.mkdir(parents=True, exist_ok=True)
    encode = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if ext == "jpg" else []
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for index in tqdm(range(num_images), desc=f"shapes/{split}", disable=not progress, unit="img"):
        rng = np.random.default_rng([params["seed"], SPLITS[split], index])
        image, objects = render_image(
            rng, height, width, max_objects=params["max_objects"],
            empty_fraction=params["empty_fraction"], max_hidden_fraction=params["max_hidden_fraction"],
        )
        image_id = index + 1
        file_name = f"{image_id:06d}.{ext}"
        if not cv2.imwrite(str(img_dir / file_name), image, encode):
            raise OSError(f"could not write image {img_dir / file_name}")
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        for obj in objects:
            x1, y1, x2, y2 = obj["box"]
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": obj["label"] + 1,
                "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], "area": float(obj["area"]),
                "iscrowd": 0, "color": obj["color"], "filled": obj["filled"], "visible": obj["visible"],
            })
    dataset = {
        "info": {"description": "synthetic shapes detection set (datasets/make_shapes.py)", "params": params},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASS_NAMES)],
    }
    ann_file = out_dir / "annotations" / f"instances_{split}.json"
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = ann_file.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(dataset), encoding="utf-8")
    tmp.replace(ann_file)
    return ann_file


def generate_shapes_dataset(
    out_dir: str | Path,
    *,
    num_train: int = 2000,
    num_val: int = 200,
    image_size: Sequence[int] = (128, 128),
    seed: int = 0,
    max_objects: int = 8,
    empty_fraction: float = 0.05,
    max_hidden_fraction: float = 0.6,
    image_format: str = "jpg",
    force: bool = False,
    progress: bool = False,
) -> dict[str, Path]:
    """Write the shapes set under ``out_dir`` unless a complete one with the same parameters is there.

    Args:
        out_dir: destination folder (created).
        num_train, num_val: number of images per split.
        image_size: ``(height, width)`` in pixels.
        seed: base seed; the same seed gives the same files byte for byte.
        max_objects: most objects per image.
        empty_fraction: probability of an image without objects.
        max_hidden_fraction: most of a shape that later shapes may cover.
        image_format: ``"jpg"`` (quality 95) or ``"png"``.
        force: regenerate even when a complete set is present.
        progress: show tqdm progress bars.

    Returns:
        ``{"train": path, "val": path}`` of the annotation files.
    """
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    if len(image_size) != 2 or min(image_size) < 2 * MIN_SIZE_PX:
        raise ValueError(f"image_size must be (height, width) of at least {2 * MIN_SIZE_PX:g} px, got {image_size}")
    out_dir = Path(out_dir)
    params: dict[str, Any] = {
        "version": FORMAT_VERSION, "num_train": int(num_train), "num_val": int(num_val),
        "image_size": [int(image_size[0]), int(image_size[1])], "seed": int(seed),
        "max_objects": int(max_objects), "empty_fraction": float(empty_fraction),
        "max_hidden_fraction": float(max_hidden_fraction), "image_format": image_format,
    }
    ann_files = {split: out_dir / "annotations" / f"instances_{split}.json" for split in SPLITS}
    marker = out_dir / MARKER_NAME
    if not force and marker.is_file() and all(p.is_file() for p in ann_files.values()):
        try:
            if json.loads(marker.read_text(encoding="utf-8")) == params:
                logger.info("shapes set already complete in %s; skipping", out_dir)
                return ann_files
        except json.JSONDecodeError:
            pass
        logger.info("shapes set in %s was made with other parameters; regenerating", out_dir)
    marker.unlink(missing_ok=True)
    start = time.perf_counter()
    counts = {"train": int(num_train), "val": int(num_val)}
    for split in SPLITS:
        _write_split(out_dir, split, counts[split], params, progress=progress)
        _remove_stale_images(out_dir / split, counts[split], image_format)
    marker.write_text(json.dumps(params), encoding="utf-8")
    logger.info("wrote shapes set to %s in %.1f s", out_dir, time.perf_counter() - start)
    return ann_files


def _remove_stale_images(img_dir: Path, num_images: int, ext: str) -> None:
    """Delete generated-looking images left by an earlier, larger or other-format run."""
    keep = {f"{i + 1:06d}.{ext}" for i in range(num_images)}
    for path in img_dir.iterdir():
        if path.suffix in (".jpg", ".png") and path.stem.isdigit() and path.name not in keep:
            path.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--num-train", type=int, default=2000, help="training images (default 2000)")
    parser.add_argument("--num-val", type=int, default=200, help="validation images (default 200)")
    parser.add_argument("--size", type=int, default=128, help="square image side in pixels (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--max-objects", type=int, default=8, help="most objects per image (default 8)")
    parser.add_argument("--format", choices=("jpg", "png"), default="jpg", help="image format (default jpg)")
    parser.add_argument("--force", action="store_true", help="regenerate even if a complete set exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    generate_shapes_dataset(
        args.out, num_train=args.num_train, num_val=args.num_val, image_size=(args.size, args.size),
        seed=args.seed, max_objects=args.max_objects, image_format=args.format, force=args.force,
        progress=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
