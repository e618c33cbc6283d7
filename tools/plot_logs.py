"""Plot loss and evaluation curves of one or more runs from their metrics.jsonl.

python tools/plot_logs.py RUN_DIR [RUN_DIR ...] --output curves.png [--keys loss heatmap AP ...] [--x epoch]

One panel per key, one line per run (labelled by the run folder name), against the training iteration
(or the epoch, `--x epoch`). Keys are the numeric fields of the records (`{"type": "train", "iter", "loss",
"heatmap", ...}` and `{"type": "val", "iter", "AP", ...}`); the val records of named validation sets
(`"set": "yell"`) give keys such as `yell/AP`. By default: every loss term of the train records and the
main metrics of the val records (AP and AP50 for COCO, mAP for VOC; per named set). A RUN_DIR may also be
the metrics.jsonl file itself.
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
DEFAULT_TRAIN_KEYS = ("loss", "heatmap", "size", "offset", "box")
DEFAULT_VAL_KEYS = ("AP", "AP50", "mAP")
NON_CURVE_KEYS = ("type", "epoch", "iter", "set")
X_AXES = ("iter", "epoch")
PANEL_SIZE = (4.5, 3.2)  # inches per panel
MAX_COLUMNS = 3
DPI = 120

Curves = dict[str, list[tuple[float, float]]]  # key -> [(iteration or epoch, value)]


def read_curves(path: Path, x_axis: str = "iter") -> tuple[Curves, Curves]:
    """The numeric fields of a metrics.jsonl: ``(train curves, val curves)``, each ``key -> [(x, value)]``.

    ``x`` is the iteration, or with ``x_axis="epoch"`` the iteration in epochs (``iter / iterations per
    epoch``, from the last record of epoch 1: an evaluation after epoch ``e`` sits at ``e``). Val records
    of a named set give keys ``<set>/<metric>``.
    """
    file = path / METRICS_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist (expected a run folder holding {METRICS_FILE})")
    curves: dict[str, Curves] = {"train": defaultdict(list), "val": defaultdict(list)}
    records = _read_records(file)
    scale = _iterations_per_epoch(records, file) if x_axis == "epoch" else 1
    for record in records:
        kind = record["type"]
        if kind not in curves:
            continue
        prefix = f"{record['set']}/" if isinstance(record.get("set"), str) else ""
        for key, value in record.items():
            if key in NON_CURVE_KEYS or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if math.isfinite(value):
                curves[kind][prefix + key].append((int(record["iter"]) / scale, float(value)))
    return dict(curves["train"]), dict(curves["val"])


def _read_records(file: Path) -> list[dict[str, Any]]:
    records = []
    for number, line in enumerate(file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record: dict[str, Any] = json.loads(line)
            record["type"], int(record["iter"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{file} line {number}: not a metrics record with 'type' and 'iter' ({error})") from None
        records.append(record)
    return records


def _iterations_per_epoch(records: list[dict[str, Any]], file: Path) -> int:
    first_epoch = [int(r["iter"]) for r in records if r.get("epoch") == 1 and r["type"] in ("train", "val")]
    if not first_epoch or max(first_epoch) < 1:
        raise ValueError(f"{file}: --x epoch needs the records of epoch 1 (their 'iter' gives the epoch length)")
    return max(first_epoch)


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
    sets = sorted({key.rpartition("/")[0] for kind, key in available if kind == "val" and "/" in key})
    val_keys = [f"{name}/{key}" for name in sets for key in DEFAULT_VAL_KEYS] + list(DEFAULT_VAL_KEYS)
    defaults = [("train", k) for k in DEFAULT_TRAIN_KEYS] + [("val", k) for k in val_keys]
    chosen = [panel for panel in defaults if panel in available]
    if not chosen:
        raise ValueError("no loss or AP curves in the given runs (empty metrics.jsonl?)")
    return chosen


def plot(runs: dict[str, tuple[Curves, Curves]], panels: list[tuple[str, str]], output: Path,
         x_axis: str = "iter") -> None:
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
        ax.set_xlabel("epoch" if x_axis == "epoch" else "iteration")
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
    parser.add_argument("--x", choices=X_AXES, default="iter", help="x axis: iteration (default) or epoch")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_tool_args(argv)


def plot_logs(args: argparse.Namespace) -> None:
    runs: dict[str, tuple[Curves, Curves]] = {}
    for item in args.runs:
        path = Path(item)
        name = (path if path.is_dir() else path.parent).resolve().name
        runs[name if name not in runs else str(path)] = read_curves(path, args.x)
    panels = choose_keys(runs, args.keys)
    plot(runs, panels, Path(args.output), args.x)
    logger.info("%d runs, %d panels (%s) -> %s", len(runs), len(panels),
                ", ".join(f"{kind}/{key}" for kind, key in panels), args.output)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_tool_logging(None)
    return run_tool(lambda: plot_logs(args), logger)


if __name__ == "__main__":
    sys.exit(main())
