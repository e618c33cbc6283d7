"""Ablation reports: ``ablation.csv`` (one row per run), ``ablation.md`` (one row per config: mean ± std
over seeds, the 95% t interval of AP and the AP difference to a baseline config paired by seed),
``ablation.png`` (final AP per config and the validation curves), ``ablation_curves.csv`` (the numbers of
those curves) and, for GHM losses,
``ablation_ghm_bins.png`` (the gradient-norm histograms per epoch). With named validation sets the
files carry the set's name (``ablation_<set>.md``, ...). See ``docs/loss_study.md``."""

from __future__ import annotations

import csv
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from centernet.ablation.plots import BINS_PLOT_FILE, PLOT_DPI, PLOT_FILE, PLOT_SIZE_INCHES, plot_ablation, plot_bins
from centernet.ablation.runs import CURVE_METRIC, RUN_METRICS, RunResult
from centernet.ablation.stats import CONFIDENCE, Interval, paired_difference, t_interval, values_per_epoch

CSV_FILE = "ablation.csv"
MARKDOWN_FILE = "ablation.md"
CURVES_FILE = "ablation_curves.csv"

CSV_METRICS = RUN_METRICS  # per-run columns of ablation.csv
TABLE_METRICS = ("AP", "AP50", "APs", "APm", "APl")  # mean ± std columns of ablation.md
PERCENT = 100.0  # metrics are fractions in [0, 1]; tables show percent
METRICS_JSON_ROUNDING = 5e-7  # metrics.json keeps 6 decimals; metrics.jsonl the full value
MISSING = "–"  # table cell for a value that does not exist (std of one seed, metric never defined)

__all__ = [
    "BINS_PLOT_FILE", "CSV_FILE", "CSV_METRICS", "CURVES_FILE", "MARKDOWN_FILE", "MISSING", "PERCENT", "PLOT_DPI",
    "PLOT_FILE", "PLOT_SIZE_INCHES", "TABLE_METRICS", "ConfigSummary", "epochs_to_reach", "format_interval",
    "format_mean_std", "markdown_table", "mean_std", "report_file", "summarize", "write_csv", "write_curves_csv",
    "write_reports",
]  # fmt: skip


@dataclass
class ConfigSummary:
    """Mean and sample std (ddof = 1) over the seeds of one config; ``None`` where undefined.

    Attributes:
        interval: the t interval of the mean final ``AP`` over the seeds.
        difference: the t interval of ``AP - AP(baseline)`` over the seeds both have; ``None`` for
            the baseline itself.
        epochs_to_baseline: per seed, the first epoch whose validation AP reached the baseline's mean final
            AP (``None``: never reached; see :func:`epochs_to_reach`).
    """

    name: str
    loss_type: str
    seeds: list[int]
    mean: dict[str, float | None]
    std: dict[str, float | None]
    final_loss: tuple[float | None, float | None]
    train_time_s: float | None
    interval: Interval | None = None
    difference: Interval | None = None
    epochs_to_baseline: list[int | None] | None = None


def mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof = 1) of the non-``None`` values.

    Returns:
        ``(None, None)`` without values, ``(mean, None)`` with one value.
    """
    present = [float(v) for v in values if v is not None]
    if not present:
        return None, None
    return statistics.fmean(present), (statistics.stdev(present) if len(present) > 1 else None)


def summarize(results: Sequence[RunResult], baseline: str | None = None) -> list[ConfigSummary]:
    """One summary per config name, in order of first appearance.

    Args:
        results: the runs.
        baseline: the config the others are compared with, paired by seed (default: the first).

    Raises:
        ValueError: ``baseline`` is not a config of ``results``.
    """
    groups: dict[str, list[RunResult]] = {}
    for result in results:
        groups.setdefault(result.spec.name, []).append(result)
    if baseline is not None and baseline not in groups:
        raise ValueError(f"baseline {baseline!r} is not one of the configs {list(groups)}")
    reference = baseline if baseline is not None else next(iter(groups), None)
    target = mean_std(run.metrics.get(CURVE_METRIC) for run in groups.get(str(reference), []))[0]
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
                interval=t_interval(run.metrics.get(CURVE_METRIC) for run in runs),
                difference=None if name == reference else paired_difference(results, name, str(reference),
                                                                             CURVE_METRIC),
                epochs_to_baseline=None if target is None else [epochs_to_reach(run.val_curve, target) for run in runs],
            )
        )
    return summaries


def epochs_to_reach(curve: dict[int, float | None], target: float) -> int | None:
    """The first epoch of a validation curve (epoch -> AP) whose AP is at least ``target`` (None: never).

    How the convergence of two configs is compared (docs/results.md): with ``target`` the baseline's mean
    final AP, the baseline itself reaches it at its last epoch on about half of its seeds.
    """
    reached = target - METRICS_JSON_ROUNDING  # final metrics come from metrics.json (rounded), curves are not
    return next((epoch for epoch, value in sorted(curve.items()) if value is not None and value >= reached), None)


def format_epochs(epochs: list[int | None] | None) -> str:
    """``"6.3 (3/3)"``: the mean epoch over the seeds that reached the target, and how many did."""
    if not epochs:
        return MISSING
    reached = [epoch for epoch in epochs if epoch is not None]
    mean = f"{statistics.fmean(reached):.1f}" if reached else "never"
    return f"{mean} ({len(reached)}/{len(epochs)})"


def report_file(name: str, tag: str | None) -> str:
    """``ablation.md`` -> ``ablation_<tag>.md`` (``tag``: a named validation set; None keeps the name)."""
    if not tag:
        return name
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}_{tag}{dot}{suffix}"


# ------------------------------------------------------------------------------ reports
def format_mean_std(mean: float | None, std: float | None, *, scale: float = 1.0, digits: int = 1) -> str:
    """``"12.3 ± 0.4"``; ``"12.3 ± –"`` without a std; ``"–"`` without a mean."""
    if mean is None:
        return MISSING
    spread = MISSING if std is None else f"{std * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {spread}"


def format_interval(interval: Interval | None, *, scale: float = 1.0, digits: int = 1, signed: bool = False) -> str:
    """``"[30.1, 39.9]"`` (``"[-1.0, +2.0]"`` when ``signed``); ``"–"`` when undefined."""
    if interval is None or interval.low is None or interval.high is None:
        return MISSING
    sign = "+" if signed else ""
    return f"[{interval.low * scale:{sign}.{digits}f}, {interval.high * scale:{sign}.{digits}f}]"


def markdown_table(summaries: Sequence[ConfigSummary], baseline: str | None = None,
                   settings: Mapping[str, str] | None = None) -> str:
    """The per-config table as GitHub markdown: metrics in %, mean ± std over seeds, the 95% t interval
    of AP and the AP difference (percentage points) to ``baseline`` (default: the first config) over
    the paired seeds, with its interval and the number of pairs. ``settings`` (a tuned study): each
    config's chosen setting, as a column after the loss."""
    reference = baseline if baseline is not None else (summaries[0].name if summaries else "baseline")
    level = f"{CONFIDENCE:.0%}"
    tuned = ["tuned setting"] if settings is not None else []
    header = ["config", "heatmap loss", *tuned, "seeds", f"{CURVE_METRIC} (%)", f"{CURVE_METRIC} {level} CI",
              f"Δ{CURVE_METRIC} vs {reference} (pp)", f"Δ {level} CI", "pairs",
              f"epoch {CURVE_METRIC} ≥ {reference}'s final (seeds)",
              *(f"{m} (%)" for m in TABLE_METRICS if m != CURVE_METRIC), "final loss", "train time (s)"]
    texts = 3 + len(tuned)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * texts + ["---:"] * (len(header) - texts)) + "|"]
    for summary in summaries:
        chosen = [settings.get(summary.name, MISSING)] if settings is not None else []
        cells = [summary.name, summary.loss_type, *chosen, str(len(summary.seeds))]
        cells.append(format_mean_std(summary.mean[CURVE_METRIC], summary.std[CURVE_METRIC], scale=PERCENT))
        cells.append(format_interval(summary.interval, scale=PERCENT))
        diff = summary.difference
        if diff is None:
            cells += ["baseline", MISSING, MISSING]
        else:
            cells.append(MISSING if diff.mean is None else f"{diff.mean * PERCENT:+.1f}")
            cells += [format_interval(diff, scale=PERCENT, signed=True), str(diff.n)]
        cells.append(format_epochs(summary.epochs_to_baseline))
        cells += [format_mean_std(summary.mean[m], summary.std[m], scale=PERCENT) for m in TABLE_METRICS
                  if m != CURVE_METRIC]
        cells.append(format_mean_std(*summary.final_loss, digits=4))
        cells.append(MISSING if summary.train_time_s is None else f"{summary.train_time_s:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(results: Sequence[RunResult], path: Path) -> None:
    """One row per run: config, heatmap_loss, seed, the metrics (fractions), final_loss, train_time_s,
    ghm_switch_epoch. Undefined values are empty cells.
    """
    columns = ["config", "heatmap_loss", "seed", *CSV_METRICS, "final_loss", "train_time_s", "ghm_switch_epoch"]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for run in results:
            values = [*(run.metrics.get(m) for m in CSV_METRICS), run.final_loss, run.train_time_s, run.switch_epoch]
            writer.writerow(
                [run.spec.name, run.spec.loss_type, run.spec.seed, *("" if v is None else v for v in values)]
            )


def write_curves_csv(results: Sequence[RunResult], path: Path) -> None:
    """One row per config and epoch: the validation AP curve of ``ablation.png`` as numbers (fractions), the
    mean and sample std over the seeds with a value at that epoch (std empty for one seed).
    """
    curves: dict[str, list[dict[int, float | None]]] = {}
    for run in results:
        curves.setdefault(run.spec.name, []).append(run.val_curve)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["config", "epoch", "seeds", f"{CURVE_METRIC}_mean", f"{CURVE_METRIC}_std"])
        for name, runs in curves.items():
            for epoch, values in values_per_epoch(runs).items():
                mean, std = mean_std(values)
                writer.writerow([name, epoch, len(values), mean, "" if std is None else std])


def write_reports(results: Sequence[RunResult], out_dir: Path, baseline: str | None = None,
                  tag: str | None = None, settings: Mapping[str, str] | None = None) -> str:
    """Write ``ablation.csv``, ``ablation.md``, ``ablation.png``, ``ablation_curves.csv`` (and
    ``ablation_ghm_bins.png`` when a run logged GHM histograms) into ``out_dir``; return the markdown table.
    ``tag`` (the named validation set the results come from) goes into the file names: ``ablation_<tag>.md``, ...
    ``settings``: a tuned study's chosen setting per config (a column of the table).

    Raises:
        ValueError: ``baseline`` is not a config of ``results``.
    """
    summaries = summarize(results, baseline)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = markdown_table(summaries, baseline, settings)
    write_csv(results, out_dir / report_file(CSV_FILE, tag))
    (out_dir / report_file(MARKDOWN_FILE, tag)).write_text(table)
    plot_ablation(results, out_dir / report_file(PLOT_FILE, tag))
    write_curves_csv(results, out_dir / report_file(CURVES_FILE, tag))
    if any(run.bin_counts for run in results):
        plot_bins(results, out_dir / report_file(BINS_PLOT_FILE, tag))
    return table
