"""Plot loss and evaluation curves of one or more runs from their metrics.jsonl.

python tools/plot_logs.py RUN_DIR [RUN_DIR ...] --output curves.png [--keys loss heatmap AP ...]

One panel per key, one line per run (labelled by the run folder name), against the training iteration.
Keys are the numeric fields of the records (`{"type": "train", "iter", "loss", "heatmap", ...}` and
`{"type": "val", "iter", "AP", ...}`); by default every loss term of the train records and the main
metric of the val records (AP for COCO, mAP for VOC). A RUN_DIR may also be the metrics.jsonl file itself.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from centernet.cli import default_argument_parser, run_tool, setup_tool_logging

logger = logging.getLogger("centernet.tools.plot_logs")

METRICS_FILE = "metrics.jsonl"
DEFAULT_TRAIN_KEYS = ("loss", "heatmap", "size", "offset")
DEFAULT_VAL_KEYS = ("AP", "AP50", "mAP")
NON_CURVE_KEYS = ("type", "epoch", "iter")
PANEL_SIZE = (4.5, 3.2)  # inches per panel
MAX_COLUMNS = 3
DPI = 120

Curves = dict[str, list[tuple[int, float]]]  # key -> [(iteration, value)]


def read_curves(path: Path) -> tuple[Curves, Curves]:
    """The numeric fields of a metrics.jsonl: ``(train curves, val curves)``, each ``key -> [(iter, value)]``."""
    file = path / METRICS_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist (expected a run folder holding {METRICS_FILE})")
    curves: dict[str, Curves] = {"train": defaultdict(list), "val": defaultdict(list)}
    for number, line in enumerate(file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record: dict[str, Any] = json.loads(line)
            kind, iteration = record["type"], int(record["iter"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{file} line {number}: not a metrics record with 'type' and 'iter' ({error})") from None
        if kind not in curves:
            continue
        for key, value in record.items():
            if key in NON_CURVE_KEYS or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if math.isfinite(value):
                curves[kind][key].append((iteration, float(value)))
    return dict(curves["train"]), dict(curves["val"])


def choose_keys(runs: dict[str, tuple[Curves, Curves]], keys: list[str] | None) -> list[tuple[str, str]]:
    """``(kind, key)`` panels: the requested keys (each looked up in train, then val), or the defaults."""
    available = {(kind, key) for train, val in runs.values() for kind, curves in (("train", train), ("val", val))
                 for key in curves}
    if keys:
        chosen = []
        for key in keys:
            found = [(kind, key) for kind in ("train", "val") if (kind, key) in available]
            if not found:
                names = sorted({k for _, k in available})
                raise ValueError(f"--keys {key}: no run logs it; available keys: {', '.join(names)}")
            chosen += found
        return chosen
    defaults = [("train", k) for k in DEFAULT_TRAIN_KEYS] + [("val", k) for k in DEFAULT_VAL_KEYS]
    chosen = [panel for panel in defaults if panel in available]
    if not chosen:
        raise ValueError("no loss or AP curves in the given runs (empty metrics.jsonl?)")
    return chosen


def plot(runs: dict[str, tuple[Curves, Curves]], panels: list[tuple[str, str]], output: Path) -> None:
    """Draw one panel per ``(kind, key)`` with a line per run and save to ``output``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(MAX_COLUMNS, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows),
                                squeeze=False)
    for ax, (kind, key) in zip(axes.flat, panels, strict=False):
        for name, (train, val) in runs.items():
            points = sorted((train if kind == "train" else val).get(key, []))
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o" if kind == "val" else None, markersize=3, label=name)
        ax.set_title(f"{kind}/{key}")
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=DPI)
    plt.close(figure)


def build_parser() -> argparse.ArgumentParser:
    parser = default_argument_parser(__doc__, config="none", overrides=False)
    parser.add_argument("runs", nargs="+", help="run folders (holding metrics.jsonl) or metrics.jsonl files")
    parser.add_argument("--output", required=True, help="image to write (.png, .pdf, .svg)")
    parser.add_argument("--keys", nargs="+", help="fields to plot (default: loss terms and AP / mAP)")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_tool_args(argv)


def plot_logs(args: argparse.Namespace) -> None:
    runs: dict[str, tuple[Curves, Curves]] = {}
    for item in args.runs:
        path = Path(item)
        name = (path if path.is_dir() else path.parent).resolve().name
        runs[name if name not in runs else str(path)] = read_curves(path)
    panels = choose_keys(runs, args.keys)
    plot(runs, panels, Path(args.output))
    logger.info("%d runs, %d panels (%s) -> %s", len(runs), len(panels),
                ", ".join(f"{kind}/{key}" for kind, key in panels), args.output)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_tool_logging(None)
    return run_tool(lambda: plot_logs(args), logger)


if __name__ == "__main__":
    sys.exit(main())
