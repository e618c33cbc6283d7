"""Run a trained CenterNet on an image, a folder of images or a video, and save annotated copies.

python tools/demo.py --checkpoint PTH --input (IMAGE | FOLDER | VIDEO) --output DIR
                     [--config CFG] [--score-thr THR] [--show-heatmap] [--flip] [--scales 1.0 ...]
                     [--resize fixed|pad] [--device auto]
                     [--slice SIZE [--overlap F] [--slice-scale S] [--full-image]]

The model, input size and normalisation come from the config stored in the checkpoint; --config
replaces it (use it for checkpoints saved without one). Class names always come from the checkpoint.

Writes <output>/<name>.jpg per image (with --show-heatmap also <name>_heatmap.jpg), or
<output>/<stem>_det.mp4 for a video (with --show-heatmap also <stem>_heatmap.mp4), plus
<output>/detections.json: [{"file_name", "frame" (videos only), "bbox": [x, y, w, h], "score",
"category_name", "category_id", "label"}] for the detections scoring at least --score-thr, in
original-image pixels (tools/eval.py --predictions scores it against a val set by file_name). An output
folder that already holds detections.json is refused unless --overwrite. In a folder, an unreadable image
is skipped with a warning and the others are still written; the exit code is then 1. Without --score-thr
the threshold is the checkpoint's score_threshold (the F1-best threshold of the evaluation that wrote it),
or 0.3 for checkpoints without one.

--slice SIZE (or eval.slice of the config; --slice 0 turns it off) runs each image in overlapping windows
of SIZE image pixels at its own scale (times --slice-scale), merged across the seams, for images much
larger than the network input (aerial, satellite, microscopy); detections.json stays in original-image
pixels (docs/inference.md, "Large images"). With --slice, a .tif/.tiff is read window by window (never
whole: rasters larger than memory work) and gets <stem>_preview.jpg (shrunk to 2048 px) instead of a
full-size copy, plus <stem>.geojson (the boxes as polygons in the raster's coordinate system) when it is
georeferenced.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from centernet.cli import (
    EXIT_ERROR,
    EXIT_OK,
    add_slice_arguments,
    default_argument_parser,
    run_tool,
    setup_tool_logging,
    slice_from_args,
)
from centernet.config import Config, load_config
from centernet.data.rasters import RasterSource, detections_to_geojson, is_raster
from centernet.inference.exported import ExportedDetector, is_exported
from centernet.inference.predictor import Detections, Detector
from centernet.utils.image_files import IMAGE_EXTENSIONS, image_files_in, read_bgr
from centernet.utils.output_dirs import existing_results
from centernet.utils.visualize import DEFAULT_SCORE_THR, draw_detections, overlay_heatmap

logger = logging.getLogger("centernet.tools.demo")

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")
VIDEO_FOURCC = "mp4v"
FALLBACK_FPS = 25.0  # when the container does not report a frame rate
DETECTIONS_FILE = "detections.json"
AnyDetector = Detector | ExportedDetector  # a checkpoint's PyTorch model or an exported file: the same calls
PREVIEW_SIDE = 2048  # longer side of the preview drawn for a raster read in windows


def build_parser() -> argparse.ArgumentParser:
    parser = default_argument_parser(__doc__, config="optional", overrides=False,
                                     config_help="experiment YAML; replaces the config stored in the checkpoint")
    parser.add_argument("--checkpoint", required=True,
                        help="trained checkpoint (checkpoints/best.pth of a run) or exported model (.onnx)")
    parser.add_argument("--input", required=True, help="an image, a folder of images or a video (.mp4/.avi/...)")
    parser.add_argument("--output", required=True, help="folder for the annotated files and detections.json")
    parser.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier run in --output")
    parser.add_argument("--score-thr", type=float, default=None,
                        help=f"lowest score drawn and saved (default: the checkpoint's F1-best threshold, "
                             f"else {DEFAULT_SCORE_THR})")
    parser.add_argument("--show-heatmap", action="store_true", help="also save the centre heatmap overlay")
    parser.add_argument("--flip", action="store_true", help="flip test-time augmentation")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0],
                        help="test scales, e.g. 0.5 1.0 1.5 (merged with the config's eval.merge)")
    parser.add_argument("--resize", choices=("fixed", "pad"), default="fixed",
                        help="fixed = the config's input size; pad = keep the resolution (padded to 32)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    add_slice_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_tool_args(argv)


def classify_input(path: Path) -> str:
    """``"image"``, ``"folder"`` or ``"video"`` for ``path``; raises for a missing path or unknown extension."""
    if not path.exists():
        raise FileNotFoundError(f"--input {path} does not exist")
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    raise ValueError(
        f"--input {path}: unknown extension {path.suffix!r}; expected an image "
        f"({', '.join(IMAGE_EXTENSIONS)}), a video ({', '.join(VIDEO_EXTENSIONS)}) or a folder"
    )


def list_images(folder: Path) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name; raises when there are none."""
    images = image_files_in(folder)
    if not images:
        raise ValueError(f"--input {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    stems: dict[str, Path] = {}
    for path in images:
        if path.stem in stems:
            raise ValueError(f"--input {folder}: {stems[path.stem].name} and {path.name} would both be saved as "
                             f"{path.stem}.jpg; rename one")
        stems[path.stem] = path
    return images


def write_image(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")


def detection_records(dets: Detections, file_name: str, category_ids: Sequence[int] | None, frame: int | None = None
                      ) -> list[dict[str, Any]]:
    """One ``detections.json`` record per detection, ``bbox`` as ``[x, y, w, h]`` in image pixels."""
    records = []
    for box, score, label in zip(dets.boxes.tolist(), dets.scores.tolist(), dets.labels.tolist(), strict=True):
        record: dict[str, Any] = {"file_name": file_name}
        if frame is not None:
            record["frame"] = frame
        record.update(
            bbox=[box[0], box[1], box[2] - box[0], box[3] - box[1]],
            score=score,
            category_name=dets.class_names[label],
            label=label,
        )
        if category_ids is not None:
            record["category_id"] = category_ids[label]
        records.append(record)
    return records


def annotate(detector: AnyDetector, image: np.ndarray, score_thr: float, show_heatmap: bool, progress: bool = False
             ) -> tuple[Detections, np.ndarray, np.ndarray | None]:
    """Detections above ``score_thr``, the annotated image and (optionally) the heatmap overlay (of the
    whole-image pass, also when the detections come from windows)."""
    dets = (detector.predict_sliced(image, progress=progress) if detector.slice is not None else detector(image))
    dets = dets.above(score_thr)
    drawn = draw_detections(image, dets.boxes, dets.scores, dets.labels, dets.class_names, score_thr=score_thr)
    heat = overlay_heatmap(image, detector.heatmap(image)) if show_heatmap else None
    return dets, drawn, heat


def run_raster(detector: AnyDetector, path: Path, args: argparse.Namespace, out_dir: Path,
               category_ids: Sequence[int] | None) -> list[dict[str, Any]]:
    """Sliced detection in a (Geo)TIFF read window by window: ``<stem>_preview.jpg`` (the raster shrunk to
    at most ``PREVIEW_SIDE`` pixels, with the boxes) and, for a georeferenced raster, ``<stem>.geojson``."""
    settings = dataclasses.replace(detector.slice, min_score=args.score_thr) if detector.slice else None
    with RasterSource(path) as raster:
        logger.info("%s: %d x %d raster, read in windows", path.name, raster.width, raster.height)
        dets = detector.predict_sliced(raster, settings, progress=not args.no_progress).above(args.score_thr)
        preview, factor = raster.read_overview(PREVIEW_SIDE)
        drawn = draw_detections(preview, dets.boxes * factor, dets.scores, dets.labels, dets.class_names,
                                score_thr=args.score_thr)
        write_image(out_dir / f"{path.stem}_preview.jpg", drawn)
        if raster.georeferenced:
            geojson = detections_to_geojson(dets.boxes, dets.scores, dets.labels, dets.class_names,
                                            raster.transform, raster.crs)
            (out_dir / f"{path.stem}.geojson").write_text(json.dumps(geojson))
            logger.info("%d detections -> %s (%s)", len(dets), out_dir / f"{path.stem}.geojson", raster.crs)
    return detection_records(dets, path.name, category_ids)


def run_file(detector: AnyDetector, path: Path, args: argparse.Namespace, out_dir: Path,
             category_ids: Sequence[int] | None) -> list[dict[str, Any]]:
    """Annotate one image file (a raster window by window with ``--slice``); returns its detection records.

    Raises:
        ValueError: the file cannot be read.
    """
    if detector.slice is not None and is_raster(path):
        return run_raster(detector, path, args, out_dir, category_ids)
    image = read_bgr(path)
    dets, drawn, heat = annotate(detector, image, args.score_thr, args.show_heatmap, progress=not args.no_progress)
    write_image(out_dir / f"{path.stem}.jpg", drawn)
    if heat is not None:
        write_image(out_dir / f"{path.stem}_heatmap.jpg", heat)
    return detection_records(dets, path.name, category_ids)


def run_images(detector: AnyDetector, paths: list[Path], args: argparse.Namespace, out_dir: Path,
               category_ids: Sequence[int] | None) -> tuple[list[dict[str, Any]], list[Path]]:
    """Annotate every image; returns the detection records and the images that could not be read.

    With ``--slice``, TIFF files are read window by window (:func:`run_raster`), never whole."""
    records: list[dict[str, Any]] = []
    unreadable: list[Path] = []
    show_bar = len(paths) > 1 and not args.no_progress
    for path in tqdm(paths, desc="demo", unit="img", disable=not show_bar, dynamic_ncols=True):
        try:
            records.extend(run_file(detector, path, args, out_dir, category_ids))
        except ValueError as error:  # unreadable: stop for a single image, skip it in a folder
            if len(paths) == 1:
                raise
            logger.warning("skipped: %s", error)
            unreadable.append(path)
    return records, unreadable


def read_frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield frame


def open_writer(path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*VIDEO_FOURCC), fps, size)
    if not writer.isOpened():
        raise OSError(f"could not open {path} for writing ({VIDEO_FOURCC}, {size[0]}x{size[1]} at {fps} fps)")
    return writer


def run_video(detector: AnyDetector, path: Path, args: argparse.Namespace, out_dir: Path,
              category_ids: Sequence[int] | None) -> list[dict[str, Any]]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"cannot open video {path} (unreadable or unsupported codec)")
    fps = capture.get(cv2.CAP_PROP_FPS) or FALLBACK_FPS
    frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    records: list[dict[str, Any]] = []
    writers: dict[str, cv2.VideoWriter] = {}
    frames = 0  # frames read so far
    try:
        bar = tqdm(read_frames(capture), desc="demo", unit="frame", total=frame_count if frame_count > 0 else None,
                   disable=args.no_progress, dynamic_ncols=True)
        for index, frame in enumerate(bar):
            frames = index + 1
            dets, drawn, heat = annotate(detector, frame, args.score_thr, args.show_heatmap)
            if not writers:
                size = (frame.shape[1], frame.shape[0])
                writers["det"] = open_writer(out_dir / f"{path.stem}_det.mp4", fps, size)
                if heat is not None:
                    writers["heatmap"] = open_writer(out_dir / f"{path.stem}_heatmap.mp4", fps, size)
            writers["det"].write(drawn)
            if heat is not None:
                writers["heatmap"].write(heat)
            records.extend(detection_records(dets, path.name, category_ids, frame=index))
    finally:
        capture.release()
        for writer in writers.values():
            writer.release()
    if frames == 0:
        raise ValueError(f"video {path} has no readable frames")
    logger.info("%d frames of %s -> %s", frames, path.name, out_dir / f"{path.stem}_det.mp4")
    return records


def check_output(out_dir: Path, input_path: Path, kind: str, overwrite: bool) -> None:
    """Refuse an output folder that is the input folder, or that holds an earlier run (unless ``overwrite``)."""
    if kind == "folder" and out_dir.resolve() == input_path.resolve():
        raise ValueError(f"--output {out_dir} is the input folder; the annotated images would overwrite it")
    if existing_results(out_dir, [DETECTIONS_FILE]) and not overwrite:
        raise FileExistsError(f"{out_dir / DETECTIONS_FILE} exists (an earlier run); pass another --output or "
                              "--overwrite to replace it")


def build_detector(args: argparse.Namespace, config: Config | None) -> AnyDetector:
    """The PyTorch detector of a checkpoint, or an exported model file (.onnx) with the same processing."""
    if not is_exported(args.checkpoint):
        return Detector.from_checkpoint(args.checkpoint, config=config, device=args.device, flip=args.flip,
                                        scales=args.scales, resize=args.resize, score_threshold=args.score_thr,
                                        slice=slice_from_args(args), config_slice=args.slice != 0)
    if args.show_heatmap or args.flip or args.scales != [1.0] or args.resize != "fixed":
        raise ValueError(f"--checkpoint {args.checkpoint} is an exported model: its graph has one fixed input and "
                         "no heatmap output; drop --show-heatmap, --flip, --scales and --resize")
    exported = ExportedDetector(args.checkpoint, slice=slice_from_args(args))
    if args.score_thr is not None:
        exported.score_threshold = args.score_thr
    return exported


def run_demo(args: argparse.Namespace) -> int:
    input_path, out_dir = Path(args.input), Path(args.output)
    kind = classify_input(input_path)
    paths = list_images(input_path) if kind == "folder" else [input_path]
    check_output(out_dir, input_path, kind, args.overwrite)
    config = load_config(args.config) if args.config else None
    detector = build_detector(args, config)
    args.score_thr = detector.score_threshold
    out_dir.mkdir(parents=True, exist_ok=True)
    unreadable: list[Path] = []
    if kind == "video":
        records = run_video(detector, input_path, args, out_dir, detector.category_ids)
    else:
        records, unreadable = run_images(detector, paths, args, out_dir, detector.category_ids)
    (out_dir / DETECTIONS_FILE).write_text(json.dumps(records, indent=1))
    logger.info("%d detections (score >= %.2f) -> %s", len(records), args.score_thr, out_dir / DETECTIONS_FILE)
    if unreadable:
        names = ", ".join(path.name for path in unreadable)
        logger.error("%d of %d images could not be read and were skipped: %s", len(unreadable), len(paths), names)
        return EXIT_ERROR
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_tool_logging(None)
    return run_tool(lambda: run_demo(args), logger)


if __name__ == "__main__":
    sys.exit(main())
