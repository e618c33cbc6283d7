"""Print a model's size and cost: parameters, FLOPs at the config's input size, output stride, per-part table.

python tools/model_info.py --config CFG [--num-classes N] [--markdown] [KEY=VALUE ...]

FLOPs count a multiply-add as 2 (torch.utils.flop_counter), for one image in inference (eval) mode; see
centernet/models/complexity.py for what is counted. The model is built on the ``meta`` device without
weights, so nothing is downloaded or computed. Heatmap classes: --num-classes, else the length of
data.classes, else 20 for a VOC training set, else COCO's 80. --markdown prints one README table row.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

import torch

from centernet.config import ConfigError, load_config
from centernet.config.schema import Config, VocDatasetConfig
from centernet.data.voc import VOC_CLASSES
from centernet.engine.logging import setup_logging
from centernet.models.build import build_model
from centernet.models.complexity import ModelComplexity, measure_complexity
from centernet.utils.errors import one_line_error

logger = logging.getLogger("centernet.tools.model_info")

COCO_NUM_CLASSES = 80
GIGA = 1e9
MEGA = 1e6


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="experiment YAML file")
    parser.add_argument("--num-classes", type=int, default=None, help="heatmap classes (default: see above)")
    parser.add_argument("--markdown", action="store_true", help="print one README table row instead")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. data.input_size=[384,384]"
    )
    return parser.parse_args(argv)


def resolve_num_classes(cfg: Config, requested: int | None) -> int:
    """Heatmap classes: ``requested``, else ``len(data.classes)``, else 20 for VOC training data, else 80."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--num-classes must be >= 1, got {requested}")
        return requested
    if cfg.data.classes:
        return len(cfg.data.classes)
    return len(VOC_CLASSES) if isinstance(cfg.data.train, VocDatasetConfig) else COCO_NUM_CLASSES


def format_report(config: str, cfg: Config, num_classes: int, info: ModelComplexity) -> str:
    """The human-readable report: summary lines and the per-part table."""
    height, width = info.input_size
    lines = [
        f"config: {config}",
        f"model: {cfg.model.backbone.type} + {cfg.model.neck.type}, {num_classes} classes, "
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(None, level=logging.WARNING)
    try:
        cfg = load_config(args.config, args.overrides)
        num_classes = resolve_num_classes(cfg, args.num_classes)
        model_cfg = dataclasses.replace(
            cfg.model, backbone=dataclasses.replace(cfg.model.backbone, weights=None), init_checkpoint=None
        )
        with torch.device("meta"):  # shapes only: no weights, no computation
            model = build_model(dataclasses.replace(cfg, model=model_cfg), num_classes)
        info = measure_complexity(model, cfg.data.input_size)
    except (ConfigError, FileNotFoundError, ValueError, KeyError, TypeError) as error:
        logger.error("%s", one_line_error(error))
        logger.debug("traceback of the error above", exc_info=True)
        return 1
    if args.markdown:
        print(format_markdown_row(args.config, list(args.overrides), cfg, info))
    else:
        print(format_report(args.config, cfg, num_classes, info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
