"""Print a model's size and cost: parameters, FLOPs at the config's input size, output stride, per-part table.

python tools/model_info.py --config CFG [--num-classes N] [--markdown] [KEY=VALUE ...]

FLOPs count a multiply-add as 2 (torch.utils.flop_counter), for one image in inference (eval) mode; see
centernet/models/complexity.py for what is counted. The model is built on the ``meta`` device without
weights, so nothing is downloaded or computed. Heatmap classes: --num-classes, else the length of
data.classes, else 20 for a VOC training set, else the categories of the COCO annotation file (val, then
train), else COCO's 80. --markdown prints one table row of docs/model_zoo.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

import torch

from centernet.cli import default_argument_parser, run_tool, setup_tool_logging
from centernet.config import load_config
from centernet.config.schema import Config
from centernet.data.classes import config_num_classes
from centernet.models.build import build_model
from centernet.models.complexity import ModelComplexity, measure_complexity

logger = logging.getLogger("centernet.tools.model_info")

GIGA = 1e9
MEGA = 1e6


def build_parser() -> argparse.ArgumentParser:
    parser = default_argument_parser(__doc__)
    parser.add_argument("--num-classes", type=int, default=None, help="heatmap classes (default: see above)")
    parser.add_argument("--markdown", action="store_true", help="print one model-zoo table row instead")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_tool_args(argv)


def resolve_num_classes(cfg: Config, requested: int | None) -> tuple[int, str]:
    """Heatmap classes and where they come from: ``requested``, else :func:`config_num_classes`."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--num-classes must be >= 1, got {requested}")
        return requested, "--num-classes"
    return config_num_classes(cfg)


def format_report(config: str, cfg: Config, classes: tuple[int, str], info: ModelComplexity) -> str:
    """The human-readable report: summary lines and the per-part table (``classes``: count and origin)."""
    height, width = info.input_size
    lines = [
        f"config: {config}",
        f"model: {cfg.model.backbone.type} + {cfg.model.neck.type}, {classes[0]} class{'es' * (classes[0] != 1)} "
        f"({classes[1]}), "
        f"head_conv {cfg.model.head.head_conv}",
        f"input: {height}x{width}, output stride {info.output_stride} "
        f"({height // info.output_stride}x{width // info.output_stride} maps)",
        f"parameters: {info.parameters:,} ({info.parameters / MEGA:.2f} M)",
        f"FLOPs: {info.flops:,} ({info.flops / GIGA:.2f} G; 2 per multiply-add, one image, inference)",
        "",
        f"{'part':<16} {'parameters':>14} {'GFLOPs':>10}",
    ]
    for part in info.parts:
        lines.append(f"{part.name:<16} {part.parameters:>14,} {part.flops / GIGA:>10.3f}")
    lines.append(f"{'total':<16} {info.parameters:>14,} {info.flops / GIGA:>10.3f}")
    return "\n".join(lines)


def format_markdown_row(config: str, overrides: list[str], cfg: Config, info: ModelComplexity) -> str:
    """``| backbone + neck | params M | GFLOPs | stride | config [overrides] |``."""
    source = " ".join([f"`{config}`", *(f"`{o}`" for o in overrides)])
    return (
        f"| {cfg.model.backbone.type} + {cfg.model.neck.type} | {info.parameters / MEGA:.2f} M | "
        f"{info.flops / GIGA:.1f} G | {info.output_stride} | {source} |"
    )


def model_info(args: argparse.Namespace) -> None:
    cfg = load_config(args.config, args.overrides)
    classes = resolve_num_classes(cfg, args.num_classes)
    model_cfg = dataclasses.replace(
        cfg.model, backbone=dataclasses.replace(cfg.model.backbone, weights=None), init_checkpoint=None
    )
    with torch.device("meta"):  # shapes only: no weights, no computation
        model = build_model(dataclasses.replace(cfg, model=model_cfg), classes[0])
    info = measure_complexity(model, cfg.data.input_size)
    if args.markdown:
        print(format_markdown_row(args.config, list(args.overrides), cfg, info))
    else:
        print(format_report(args.config, cfg, classes, info))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_tool_logging(None, level=logging.WARNING)
    return run_tool(lambda: model_info(args), logger)


if __name__ == "__main__":
    sys.exit(main())
