"""Inference latency per stage, throughput and peak memory of a CenterNet model.

python tools/benchmark.py --config CFG [--checkpoint PTH] [--batch-size 1] [--device cpu|cuda] [--runs 50]
                          [--warmup 5] [--channels-last] [--compile] [--amp off|bf16|fp16] [--images PATH ...]
                          [--output results.json] [KEY=VALUE ...]

Stages of one batch (each timed separately, CUDA synchronised at each boundary):
  pre-process   letterbox warp (ValTransform) of the BGR images, stack, copy to the device, normalise;
  network       the model forward (under autocast when --amp is set);
  decode        peak keep + top-K (centernet.decode.decode_detections), result copied to the host;
  post-process  inverse affine of every image's boxes back to image pixels.
Reports median and 90th percentile per stage over --runs batches (after --warmup untimed ones), images/s
from the median total, and peak memory: CUDA max_memory_allocated, or the process's peak resident set size
on CPU (it includes the Python process and libraries, not only the model). Without --checkpoint the model
is randomly initialised (same cost; its classes as tools/model_info.py counts them). Images: --images
(files or folders; no annotation file is needed then), else the config's val set.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from centernet.cli import default_argument_parser, run_tool, setup_tool_logging
from centernet.config import load_config
from centernet.config.schema import Config
from centernet.data.build import build_dataset
from centernet.data.classes import config_num_classes
from centernet.decode import detections_to_image
from centernet.inference.predictor import Detector
from centernet.inference.runner import decode_predicted
from centernet.models.build import build_model
from centernet.utils.amp import autocast_context
from centernet.utils.image_files import collect_image_paths, read_bgr

logger = logging.getLogger("centernet.tools.benchmark")

STAGES = ("pre-process", "network", "decode", "post-process")
PERCENTILE = 90
KIB = 1024
MIB = 1024 * 1024


def build_parser() -> argparse.ArgumentParser:
    parser = default_argument_parser(__doc__, config_help="experiment YAML (model, input size, normalisation)")
    parser.add_argument("--checkpoint", help="trained weights (default: random init, same speed)")
    parser.add_argument("--batch-size", type=int, default=1, help="images per forward pass")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--runs", type=int, default=50, help="timed batches")
    parser.add_argument("--warmup", type=int, default=5, help="untimed batches first (after any compilation)")
    parser.add_argument("--channels-last", action="store_true", help="NHWC model and input")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (compile time reported)")
    parser.add_argument("--amp", choices=("off", "bf16", "fp16"), default="off", help="autocast precision")
    parser.add_argument("--topk", type=int, default=100, help="detections decoded per image")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    parser.add_argument("--images", nargs="+", help="images or folders to run on (default: the val set)")
    parser.add_argument("--output", help="write the results as JSON here")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_tool_args(argv)


def load_images(args: argparse.Namespace, cfg: Config, count: int) -> list[np.ndarray]:
    """``count`` BGR images: from --images (cycled) or the config's val set."""
    if args.images:
        images = [read_bgr(path) for path in collect_image_paths(args.images, "--images")[:count]]
    else:
        dataset = build_dataset(cfg, "val")
        if len(dataset) == 0:
            raise ValueError(f"the val set of {args.config} has no images; pass --images")
        images = [dataset.load_raw(i)["image"] for i in range(min(count, len(dataset)))]
    return [images[i % len(images)] for i in range(count)]


def build_detector(args: argparse.Namespace, cfg: Config, device: torch.device) -> Detector:
    """The detector to time: from --checkpoint, or randomly initialised with the val set's class count."""
    cfg = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, channels_last=args.channels_last))
    if args.checkpoint:
        return Detector.from_checkpoint(args.checkpoint, config=cfg, device=str(device), amp=args.amp, topk=args.topk)
    num_classes, _ = config_num_classes(cfg)
    # random init: never fetch pretrained weights for a speed measurement
    backbone = dataclasses.replace(cfg.model.backbone, weights=None)
    model = build_model(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, backbone=backbone)), num_classes)
    return Detector(model, class_names=[str(i) for i in range(num_classes)], input_size=cfg.data.input_size,
                    channel_order=cfg.data.channel_order, mean=cfg.data.mean, std=cfg.data.std, device=device,
                    amp=args.amp, channels_last=args.channels_last, topk=args.topk)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_batch(detector: Detector, network: Callable[[torch.Tensor], dict[str, torch.Tensor]],
              images: list[np.ndarray]) -> dict[str, float]:
    """Run the four stages on one batch; returns seconds per stage."""
    device = detector.device
    times: dict[str, float] = {}
    start = time.perf_counter()
    samples = [detector.transform(image) for image in images]
    batch = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2)
    inputs = detector.normalizer(batch.to(device))
    synchronize(device)
    times["pre-process"] = time.perf_counter() - start
    start = time.perf_counter()
    with torch.inference_mode(), autocast_context(device, detector.amp):
        maps = network(inputs)
    synchronize(device)
    times["network"] = time.perf_counter() - start
    start = time.perf_counter()
    with torch.inference_mode():
        dets = decode_predicted(inputs, maps, k=detector.topk).cpu().numpy()
    times["decode"] = time.perf_counter() - start
    start = time.perf_counter()
    output_size = tuple(maps["heatmap"].shape[-2:])
    for sample, image_dets in zip(samples, dets, strict=True):
        detections_to_image(image_dets, sample.center, sample.scale, output_size)
    times["post-process"] = time.perf_counter() - start
    return times


def summarize(samples: list[dict[str, float]], batch_size: int) -> dict[str, Any]:
    """Median / p90 milliseconds per stage and in total, and images per second from the median total."""
    result: dict[str, Any] = {}
    totals = [sum(run.values()) for run in samples]
    for name, values in [*((stage, [run[stage] for run in samples]) for stage in STAGES), ("total", totals)]:
        result[name] = {"median_ms": 1000 * statistics.median(values),
                        "p90_ms": 1000 * float(np.percentile(values, PERCENTILE))}
    result["images_per_s"] = batch_size / statistics.median(totals)
    return result


def peak_memory_mib(device: torch.device) -> float:
    """CUDA: ``max_memory_allocated``; CPU: the process's peak resident set size (Linux reports KiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / MIB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB / MIB


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    if args.runs < 1 or args.batch_size < 1 or args.warmup < 0:
        raise ValueError("--runs and --batch-size must be >= 1 and --warmup >= 0")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.overrides)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: CUDA is not available on this machine")
    detector = build_detector(args, cfg, device)
    images = load_images(args, cfg, args.batch_size)
    network: Callable[[torch.Tensor], dict[str, torch.Tensor]] = detector.model
    compile_s = None
    if args.compile:
        network = torch.compile(detector.model)
        start = time.perf_counter()
        run_batch(detector, network, images)  # compiles
        compile_s = time.perf_counter() - start
    for _ in range(args.warmup):
        run_batch(detector, network, images)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    samples = [run_batch(detector, network, images) for _ in range(args.runs)]
    result = {
        "config": args.config, "overrides": list(args.overrides), "checkpoint": args.checkpoint,
        "device": str(device), "batch_size": args.batch_size,
        "input_size": list(detector.transform.input_size), "runs": args.runs, "amp": detector.amp,
        "channels_last": args.channels_last, "compile": args.compile, "compile_s": compile_s,
        "threads": torch.get_num_threads(), **summarize(samples, args.batch_size),
        "peak_memory_mib": peak_memory_mib(device),
        "peak_memory_kind": "cuda max_memory_allocated" if device.type == "cuda" else "process peak RSS",
    }
    return result


def format_table(result: dict[str, Any]) -> str:
    lines = [f"{'stage':<13} {'median ms':>10} {'p90 ms':>10}"]
    lines += [f"{name:<13} {result[name]['median_ms']:>10.2f} {result[name]['p90_ms']:>10.2f}"
              for name in (*STAGES, "total")]
    lines.append(f"{result['images_per_s']:.1f} images/s, peak memory {result['peak_memory_mib']:.0f} MiB "
                 f"({result['peak_memory_kind']})")
    return "\n".join(lines)


def run_benchmark(args: argparse.Namespace) -> None:
    result = benchmark(args)
    logger.info("%s, batch %d, %s, amp %s, channels_last %s, compile %s, %d threads, %d runs:\n%s",
                Path(args.config).name, args.batch_size, result["device"], result["amp"], args.channels_last,
                args.compile, result["threads"], args.runs, format_table(result))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_tool_logging(None)
    return run_tool(lambda: run_benchmark(args), logger)


if __name__ == "__main__":
    sys.exit(main())
