"""Heatmap contrast of trained checkpoints on a validation set: map quantiles and the peak height at objects.

python tools/heatmap_stats.py --checkpoints PTH [PTH ...] [--val-set NAME] [--plot PNG [--overwrite]]
    [--device cpu] [--no-progress] [KEY=VALUE ...]

For each checkpoint, every image of the validation set of its stored config (KEY=VALUE overrides apply,
e.g. data.val.ann_file=...; with several named sets the first, or --val-set NAME) goes through the model
at the config's input size. Printed as one markdown table row per checkpoint: the 50% / 90% / 99%
quantiles of all heatmap cells, the median peak at the objects (the highest probability of the object's
class in the 3 x 3 cells around its box centre) and the share of objects whose peak is above their
class map's 99% quantile in that image (centernet/evaluation/heatmap_stats.py; docs/loss_study.md shows what
it explains). --plot writes the histograms of the cell probabilities, one line per checkpoint; an existing file is kept
unless --overwrite.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from centernet.cli import ToolArgumentParser, default_argument_parser, run_tool, setup_tool_logging
from centernet.data.build import build_val_datasets, val_set_sections
from centernet.evaluation.heatmap_stats import MARKDOWN_HEADER, HeatmapStatistics, HeatmapSummary, markdown_row
from centernet.inference.predictor import Detector
from centernet.inference.trained_model import TrainedCheckpoint

logger = logging.getLogger("centernet.tools.heatmap_stats")

CHECKPOINTS_FOLDER = "checkpoints"


def build_parser() -> ToolArgumentParser:
    parser = default_argument_parser(__doc__, config="none")
    parser.add_argument("--checkpoints", nargs="+", required=True, metavar="PTH", help="trained checkpoints")
    parser.add_argument("--val-set", metavar="NAME", help="named validation set (default: the first)")
    parser.add_argument("--plot", metavar="PNG", help="write the cell-probability histograms here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default: auto)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_tool_args(argv)
    missing = [path for path in args.checkpoints if not Path(path).is_file()]
    if missing:
        parser.error(f"--checkpoints: {', '.join(missing)} not found")
    if args.plot and Path(args.plot).exists() and not args.overwrite:
        parser.error(f"--plot {args.plot} exists; pass --overwrite to replace it")
    return args


def run_names(paths: list[Path]) -> list[str]:
    """A table name per checkpoint: ``<parent>/<run>`` for ``.../<parent>/<run>/checkpoints/x.pth`` (e.g.
    ``trees_focal/seed0``); the whole path where that is not unique or the file is not in a ``checkpoints`` folder."""
    short = [f"{path.parent.parent.parent.name}/{path.parent.parent.name}" if path.parent.name == CHECKPOINTS_FOLDER
             else str(path) for path in paths]
    return [name if short.count(name) == 1 else str(path) for name, path in zip(short, paths, strict=True)]


def checkpoint_stats(path: Path, overrides: list[str], val_set: str | None, device: str,
                     progress: bool) -> HeatmapSummary:
    """The :class:`HeatmapSummary` of one checkpoint on its config's validation set (the first, or ``val_set``).

    Raises:
        ValueError: the validation set's classes are not the checkpoint's.
    """
    cfg = TrainedCheckpoint.read(path).config(overrides)
    name, dataset = build_val_datasets(cfg, val_set or val_set_sections(cfg)[0][0])[0]
    detector = Detector.from_checkpoint(path, config=cfg, device=device)
    if tuple(dataset.class_names) != tuple(detector.class_names):
        raise ValueError(f"{path}: the model's classes {list(detector.class_names)} are not those of the val set "
                         f"{name or 'data.val'} {list(dataset.class_names)}")
    stats = HeatmapStatistics()
    for index in tqdm(range(len(dataset)), desc=path.name, unit="img", disable=not progress, dynamic_ncols=True):
        raw = dataset.load_raw(index)
        heatmap = detector.heatmap(raw["image"])
        height, width = raw["image"].shape[:2]
        scale = np.array([heatmap.shape[2] / width, heatmap.shape[1] / height])  # map cells per pixel, x and y
        boxes = raw["boxes"][~raw["ignore"]]
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2 * scale
        stats.add(heatmap, centres, raw["labels"][~raw["ignore"]])
    logger.info("%s: %d images of %s", path, len(dataset), name or "data.val")
    return stats.summary()


def plot_histograms(summaries: dict[str, HeatmapSummary], path: Path) -> None:
    """One line per checkpoint: the share of heatmap cells in each of the 50 probability bins (log scale)."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, renders with Agg (as ablation plots)

    figure = Figure(figsize=(6.4, 3.6))
    axis = figure.subplots()
    for name, summary in summaries.items():
        share = summary.histogram / max(summary.cells, 1)
        centres = (np.arange(len(share)) + 0.5) / len(share)
        axis.plot(centres, np.where(share > 0, share, np.nan), marker=".", label=name)
    axis.set(yscale="log", xlabel="heatmap probability p", ylabel="share of cells", xlim=(0, 1))
    axis.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)


def heatmap_stats(args: argparse.Namespace) -> None:
    paths = [Path(item) for item in args.checkpoints]
    summaries = {name: checkpoint_stats(path, args.overrides, args.val_set, args.device, progress=not args.no_progress)
                 for name, path in zip(run_names(paths), paths, strict=True)}
    print(MARKDOWN_HEADER)
    for name, summary in summaries.items():
        print(markdown_row(name, summary))
    if args.plot:
        plot_histograms(summaries, Path(args.plot))
        logger.info("wrote %s", args.plot)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_tool_logging(None)
    return run_tool(lambda: heatmap_stats(args), logger)


if __name__ == "__main__":
    sys.exit(main())
