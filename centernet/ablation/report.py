"""Ablation reports: ``ablation.csv`` (one row per run), ``ablation.md`` (one row per config, mean ± std
over seeds) and ``ablation.png`` (final AP per config and the validation curves)."""

from __future__ import annotations

import csv
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from centernet.ablation.runs import CURVE_METRIC, RUN_METRICS, RunResult

CSV_FILE = "ablation.csv"
MARKDOWN_FILE = "ablation.md"
PLOT_FILE = "ablation.png"

CSV_METRICS = RUN_METRICS  # per-run columns of ablation.csv
TABLE_METRICS = ("AP", "AP50", "APs", "APm", "APl")  # mean ± std columns of ablation.md
PERCENT = 100.0  # metrics are fractions in [0, 1]; tables show percent
MISSING = "–"  # table cell for a value that does not exist (std of one seed, metric never defined)
PLOT_SIZE_INCHES = (12.0, 4.5)
PLOT_DPI = 100
ERROR_BAR_CAPSIZE = 4.0


@dataclass
class ConfigSummary:
    """Mean and sample std (ddof = 1) over the seeds of one config; ``None`` where undefined."""

    name: str
    loss_type: str
    seeds: list[int]
    mean: dict[str, float | None]
    std: dict[str, float | None]
    final_loss: tuple[float | None, float | None]
    train_time_s: float | None


def mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof = 1) of the non-``None`` values.

    Returns:
        ``(None, None)`` without values, ``(mean, None)`` with one value.
    """
    present = [float(v) for v in values if v is not None]
    if not present:
        return None, None
    return statistics.fmean(present), (statistics.stdev(present) if len(present) > 1 else None)


def summarize(results: Sequence[RunResult]) -> list[ConfigSummary]:
    """One summary per config name, in order of first appearance."""
    groups: dict[str, list[RunResult]] = {}
    for result in results:
        groups.setdefault(result.spec.name, []).append(result)
    summaries = []
    for name, runs in groups.items():
        stats = {metric: mean_std(run.metrics.get(metric) for run in runs) for metric in CSV_METRICS}
        summaries.append(
            ConfigSummary(
                name=name,
                loss_type=runs[0].spec.loss_type,
                seeds=[run.spec.seed for run in runs],
                mean={metric: value[0] for metric, value in stats.items()},
                std={metric: value[1] for metric, value in stats.items()},
                final_loss=mean_std(run.final_loss for run in runs),
                train_time_s=mean_std(run.train_time_s for run in runs)[0],
            )
        )
    return summaries


# ------------------------------------------------------------------------------ reports
def format_mean_std(mean: float | None, std: float | None, *, scale: float = 1.0, digits: int = 1) -> str:
    """``"12.3 ± 0.4"``; ``"12.3 ± –"`` without a std; ``"–"`` without a mean."""
    if mean is None:
        return MISSING
    spread = MISSING if std is None else f"{std * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {spread}"


def markdown_table(summaries: Sequence[ConfigSummary]) -> str:
    """The per-config table (metrics in %, mean ± std over seeds) as GitHub markdown."""
    header = ["config", "heatmap loss", "seeds", *(f"{m} (%)" for m in TABLE_METRICS), "final loss", "train time (s)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|"]
    for summary in summaries:
        cells = [summary.name, summary.loss_type, str(len(summary.seeds))]
        cells += [format_mean_std(summary.mean[m], summary.std[m], scale=PERCENT) for m in TABLE_METRICS]
        cells.append(format_mean_std(*summary.final_loss, digits=4))
        cells.append(MISSING if summary.train_time_s is None else f"{summary.train_time_s:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(results: Sequence[RunResult], path: Path) -> None:
    """One row per run: config, heatmap_loss, seed, the metrics (fractions), final_loss, train_time_s.

    Undefined values are empty cells.
    """
    columns = ["config", "heatmap_loss", "seed", *CSV_METRICS, "final_loss", "train_time_s"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for run in results:
            values = [*(run.metrics.get(m) for m in CSV_METRICS), run.final_loss, run.train_time_s]
            writer.writerow(
                [run.spec.name, run.spec.loss_type, run.spec.seed, *("" if v is None else v for v in values)]
            )


def plot_ablation(results: Sequence[RunResult], path: Path) -> None:
    """Left: mean AP (%) per config with std error bars; right: mean validation AP (%) over epochs."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, renders with Agg
    from matplotlib.ticker import MaxNLocator

    summaries = summarize(results)
    figure = Figure(figsize=PLOT_SIZE_INCHES)
    bars, curves = figure.subplots(1, 2)
    names = [s.name for s in summaries]
    means = [PERCENT * (s.mean[CURVE_METRIC] or 0.0) for s in summaries]
    errors = [PERCENT * (s.std[CURVE_METRIC] or 0.0) for s in summaries]
    positions = list(range(len(summaries)))
    drawn = bars.bar(positions, means, yerr=errors, capsize=ERROR_BAR_CAPSIZE, color=[f"C{i}" for i in positions])
    labels = [format_mean_std(s.mean[CURVE_METRIC], s.std[CURVE_METRIC], scale=PERCENT) for s in summaries]
    bars.bar_label(drawn, labels=labels, label_type="center")  # inside the bar, clear of the error bar
    bars.set_xticks(positions, names, rotation=15, ha="right")
    bars.set_ylabel(f"final {CURVE_METRIC} (%), mean ± std over seeds")
    bars.set_title("final accuracy")

    for index, summary in enumerate(summaries):
        per_epoch: dict[int, list[float | None]] = {}
        for run in results:
            if run.spec.name == summary.name:
                for epoch, value in run.val_curve.items():
                    per_epoch.setdefault(epoch, []).append(value)
        points = [(epoch, mean_std(values)[0]) for epoch, values in sorted(per_epoch.items())]
        points = [(epoch, PERCENT * value) for epoch, value in points if value is not None]
        if points:
            epochs, values = zip(*points, strict=True)
            curves.plot(epochs, values, marker="o", color=f"C{index}", label=summary.name)
    curves.set_xlabel("epoch")
    curves.xaxis.set_major_locator(MaxNLocator(integer=True))
    curves.set_ylabel(f"validation {CURVE_METRIC} (%), mean over seeds")
    curves.set_title("validation curve")
    if curves.get_legend_handles_labels()[0]:
        curves.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=PLOT_DPI)


def write_reports(results: Sequence[RunResult], out_dir: Path) -> str:
    """Write ``ablation.csv``, ``ablation.md`` and ``ablation.png`` into ``out_dir``; return the markdown table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = markdown_table(summarize(results))
    write_csv(results, out_dir / CSV_FILE)
    (out_dir / MARKDOWN_FILE).write_text(table)
    plot_ablation(results, out_dir / PLOT_FILE)
    return table


# ------------------------------------------------------------------------------ helpers
