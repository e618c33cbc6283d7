"""Export a trained CenterNet with its decoder to ONNX or TorchScript (optionally verified against PyTorch).

python tools/export.py --checkpoint PTH --format onnx|torchscript --output FILE [--config CFG] [--verify]
                       [--verify-images IMAGE|FOLDER ...] [--topk K] [--deform-conv native|grid_sample]

The exported graph takes normalised float images [B, 3, H, W] (B dynamic, H x W = data.input_size:
letterbox the image as ValTransform does, then (x / 255 - mean) / std in the model's channel order) and
returns boxes [B, K, 4] (x1, y1, x2, y2 in input pixels), scores [B, K] and classes [B, K] (int64), best
first. FILE.json next to the export records what a runtime needs: input size, channel order, mean/std,
class names, K.

--verify runs the exported file (onnxruntime / torch.jit.load) and PyTorch on real images (--verify-images,
default: the first images of the val set of the config: --config, else the one stored in the checkpoint)
and fails unless the boxes agree within 1e-3 input
pixels and the classes are identical (ranks of near-equal scores may swap; see compare_detections).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from centernet.cli import default_argument_parser, run_tool, setup_tool_logging
from centernet.config import Config, load_config
from centernet.config.schema import val_set_names
from centernet.data.build import build_dataset
from centernet.export.exporter import DEFORM_CONV_MODES, EXPORTERS, ExportableDetector, export_detector, export_metadata
from centernet.export.int8 import compare_accuracy, reject, write_int8
from centernet.export.quantize import CALIBRATION_METHODS, KEEP_FLOAT
from centernet.export.verify import BOX_TOLERANCE, compare_detections, load_exported
from centernet.inference.predictor import DEFAULT_TOPK, Detector
from centernet.utils.image_files import collect_image_paths, read_bgr

logger = logging.getLogger("centernet.tools.export")

DEFAULT_VERIFY_IMAGES = 4


def build_parser() -> argparse.ArgumentParser:
    parser = default_argument_parser(__doc__, config="optional", overrides=False,
                                     config_help="experiment YAML; replaces the config stored in the checkpoint")
    parser.add_argument("--checkpoint", required=True, help="trained checkpoint")
    parser.add_argument("--format", required=True, choices=sorted(EXPORTERS), help="export format")
    parser.add_argument("--output", required=True, help="file to write (.onnx / .pt)")
    parser.add_argument("--topk", type=int, default=DEFAULT_TOPK, help="detections per image K")
    parser.add_argument("--deform-conv", default="native", choices=DEFORM_CONV_MODES,
                        help="native DeformConv op, or grid_sample + matmul for runtimes without it")
    parser.add_argument("--verify", action="store_true", help="compare the exported model with PyTorch")
    parser.add_argument("--verify-images", nargs="+", default=None, help="images or folders for --verify")
    parser.add_argument("--batch-size", type=int, default=2, help="images per verification batch")
    int8 = parser.add_argument_group("int8 (ONNX Runtime static quantization; docs/inference.md)")
    int8.add_argument("--quantize", choices=("int8",), help="also write <output stem>.int8.onnx")
    int8.add_argument("--calibration-set", metavar="NAME|FOLDER",
                      help="calibrate on a named val set, a folder of images, or 'train' (default)")
    int8.add_argument("--calibration-images", type=int, default=16, metavar="N",
                      help="images to calibrate on (default: 16)")
    int8.add_argument("--calibration-method", default="percentile", choices=CALIBRATION_METHODS,
                      help="percentile (default) and entropy hold every activation of every image in memory "
                           "(3.3 GB for 16 trees images at 384 px); minmax does not (0.4 GB)")
    int8.add_argument("--keep-float", nargs="*", default=list(KEEP_FLOAT), choices=KEEP_FLOAT, metavar="KIND",
                      help=f"convolutions left in float (default: {' '.join(KEEP_FLOAT)}; none: every one int8)")
    int8.add_argument("--accuracy-set", metavar="NAME", help="val set --verify scores both models on "
                                                             "(default: the first; never the calibration set)")
    int8.add_argument("--max-ap50-drop", type=float, default=1.0,
                      help="--verify fails (the int8 file renamed *.int8.rejected.onnx) past this AP50 drop, points")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_tool_args(argv)


def read_images(items: list[str]) -> list[np.ndarray]:
    """BGR images from files and folders (a folder contributes its image files, sorted)."""
    return [read_bgr(path) for path in collect_image_paths(items, "--verify-images")]


def verification_images(args: argparse.Namespace, detector: Detector) -> list[np.ndarray]:
    """The images --verify runs on: --verify-images, else the first val images of the detector's config."""
    if args.verify_images:
        return read_images(args.verify_images)
    if detector.config is None:
        raise ValueError("--verify needs --verify-images: the detector has no config whose val set provides images")
    source = args.config or f"{args.checkpoint} ['config']"
    try:
        dataset = build_dataset(detector.config, "val")
        count = min(DEFAULT_VERIFY_IMAGES, len(dataset))
        images = [dataset.load_raw(i)["image"] for i in range(count)]
    except (FileNotFoundError, ValueError) as error:
        raise ValueError(f"--verify: the val set of {source} is not readable here ({error}); "
                         "pass --verify-images") from error
    if not images:
        raise ValueError(f"--verify: the val set of {source} has no images; pass --verify-images")
    return images


def verify(path: Path, fmt: str, detector: Detector, images: list[np.ndarray], k: int, batch_size: int) -> dict:
    """Run PyTorch and the exported file on ``images``; returns :func:`compare_detections` over all batches."""
    reference_module = ExportableDetector(detector.model.cpu().eval(), k).eval()
    run = load_exported(path, fmt)
    totals = {"max_box_diff": 0.0, "max_score_diff": 0.0, "classes_equal": True, "matched": 0, "tie_swaps": 0,
              "rows": 0}
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        batch = torch.from_numpy(np.stack([detector.transform(image).image for image in chunk])).permute(0, 3, 1, 2)
        inputs = detector.normalizer.cpu()(batch).contiguous()  # [B, 3, H, W] float32
        with torch.inference_mode():
            reference = [t.numpy() for t in reference_module(inputs)]
        result = compare_detections(reference, run(inputs.numpy()))
        totals["max_box_diff"] = max(totals["max_box_diff"], result["max_box_diff"])
        totals["max_score_diff"] = max(totals["max_score_diff"], result["max_score_diff"])
        totals["classes_equal"] = totals["classes_equal"] and bool(result["classes_equal"])
        totals["matched"] += int(result["matched"])
        totals["tie_swaps"] += int(result["tie_swaps"])
        totals["rows"] += int(result["rows"])
    return totals


def export(args: argparse.Namespace) -> None:
    config = load_config(args.config) if args.config else None
    detector = Detector.from_checkpoint(args.checkpoint, config=config, device="cpu", amp="off")
    cfg_input = detector.transform.input_size
    k = args.topk
    output = export_detector(detector.model, fmt=args.format, path=args.output, input_size=cfg_input, k=k,
                             deform_conv=args.deform_conv)
    metadata = export_metadata(detector, args.format, k, str(args.checkpoint))
    Path(f"{output}.json").write_text(json.dumps(metadata, indent=1))
    if args.verify:
        check_verification(output, args, detector, k)
    if args.quantize:
        quantize(output, args, detector)


def accuracy_set_name(cfg: Config, args: argparse.Namespace) -> str | None:
    """--accuracy-set, else the first val set that is not the calibration set (None: the one unnamed val set)."""
    if args.accuracy_set:
        return str(args.accuracy_set)
    names = [name for name in (val_set_names(cfg) or []) if name != args.calibration_set]
    if val_set_names(cfg) and not names:
        raise ValueError(f"--calibration-set {args.calibration_set} is the only val set: nothing is left to score "
                         "int8 on; calibrate on 'train' or a folder")
    return names[0] if names else None


def quantize(output: Path, args: argparse.Namespace, detector: Detector) -> None:
    """Write the int8 model; with --verify, score both on the accuracy set and reject a drop past the tolerance."""
    if args.format != "onnx":
        raise ValueError("--quantize int8 needs --format onnx (ONNX Runtime runs the quantized model)")
    if detector.config is None:
        raise ValueError("--quantize needs a config (--config CFG): its sets give the calibration images")
    if args.calibration_set is not None and args.calibration_set == args.accuracy_set:
        raise ValueError(f"--calibration-set {args.calibration_set} is also --accuracy-set: calibrate on other images")
    target, info = write_int8(output, detector.config, args.calibration_set, args.calibration_images,
                              args.calibration_method, args.keep_float)
    logger.info("int8 model -> %s (calibrated on %d images of %s)", target, info["images"], info["calibration"])
    if not args.verify:
        return
    report = compare_accuracy(output, target, detector.config, accuracy_set_name(detector.config, args))
    drop = 100 * ((report["fp32"]["AP50"] or 0.0) - (report["int8"]["AP50"] or 0.0))
    logger.info("int8 against fp32 on %s: AP %s / %s, AP50 %s / %s (drop %.2f points), box agreement %.3f",
                report["set"], report["int8"]["AP"], report["fp32"]["AP"], report["int8"]["AP50"],
                report["fp32"]["AP50"], drop, report["box_agreement"])
    meta_path = Path(f"{target}.json")
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "verification": report}, indent=1))
    if drop > args.max_ap50_drop:
        kept = reject(target)
        raise ValueError(f"int8 AP50 {report['int8']['AP50']} against fp32 {report['fp32']['AP50']} on "
                         f"{report['set']}: a drop of {drop:.2f} points > --max-ap50-drop {args.max_ap50_drop}; "
                         f"the int8 model is kept as {kept}")


def check_verification(output: Path, args: argparse.Namespace, detector: Detector, k: int) -> None:
    """Run --verify and raise unless the exported file agrees with PyTorch."""
    images = verification_images(args, detector)
    result = verify(output, args.format, detector, images, k, max(1, args.batch_size))
    logger.info("verify on %d images: max |boxes diff| %.3g px, max |scores diff| %.3g, classes equal %s, "
                "%d/%d rows matched, %d tied rows ranked differently", len(images), result["max_box_diff"],
                result["max_score_diff"], result["classes_equal"], result["matched"], result["rows"],
                result["tie_swaps"])
    if result["max_box_diff"] > BOX_TOLERANCE or not result["classes_equal"]:
        raise ValueError(f"--verify failed for {output}: max box difference {result['max_box_diff']:.3g} px "
                         f"(limit {BOX_TOLERANCE}), classes equal: {result['classes_equal']}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_tool_logging(None)
    return run_tool(lambda: export(args), logger)


if __name__ == "__main__":
    sys.exit(main())
