"""Ablation figures: ``ablation.png`` (final AP per config; validation AP per epoch, mean and ± std band
over seeds) and ``ablation_ghm_bins.png`` (per GHM config, the share of heatmap elements in each
gradient-norm bin at the end of every epoch, mean over seeds). See ``docs/loss_study.md``."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from centernet.ablation.runs import CURVE_METRIC, RunResult
from centernet.ablation.stats import mean_band

PLOT_FILE = "ablation.png"
BINS_PLOT_FILE = "ablation_ghm_bins.png"
PLOT_SIZE_INCHES = (14.0, 4.5)
ROW_INCHES = 0.4  # bar-chart height per config
BINS_PANEL_INCHES = (3.2, 2.6)  # one small panel per GHM config
PLOT_DPI = 100
ERROR_BAR_CAPSIZE = 4.0
BAND_ALPHA = 0.2
PERCENT = 100.0


def _groups(results: Sequence[RunResult]) -> dict[str, list[RunResult]]:
    groups: dict[str, list[RunResult]] = {}
    for run in results:
        groups.setdefault(run.spec.name, []).append(run)
    return groups


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 0.0
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def plot_ablation(results: Sequence[RunResult], path: Path) -> None:
    """Left: mean final AP (%) per config with std error bars; right: validation AP (%) per epoch, mean
    over seeds with a ± std band."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, renders with Agg
    from matplotlib.ticker import MaxNLocator

    groups = _groups(results)
    width, height = PLOT_SIZE_INCHES
    figure = Figure(figsize=(width, max(height, ROW_INCHES * len(groups) + 1.5)))  # a readable row per config
    bars, curves = figure.subplots(1, 2)
    positions = list(range(len(groups)))
    stats = [_mean_std([v for run in runs if (v := run.metrics.get(CURVE_METRIC)) is not None])
             for runs in groups.values()]
    means = [PERCENT * mean for mean, _ in stats]
    errors = [PERCENT * std for _, std in stats]
    bars.barh(positions, means, xerr=errors, capsize=ERROR_BAR_CAPSIZE, color=[f"C{i}" for i in positions])
    right = max([m + e for m, e in zip(means, errors, strict=True)] + [1.0])
    pad = 0.02 * right
    for position, value, error in zip(positions, means, errors, strict=True):  # right of the error bar
        bars.text(value + error + pad, position, f"{value:.1f} ± {error:.1f}", va="center")
    bars.set_yticks(positions, list(groups))
    bars.invert_yaxis()  # the first config on top, as in the table
    bars.set_xlim(0.0, 1.3 * right)  # room for the labels
    bars.set_xlabel(f"final {CURVE_METRIC} (%), mean ± std over seeds")
    bars.set_title("final accuracy")

    for index, (name, runs) in enumerate(groups.items()):
        band = mean_band(run.val_curve for run in runs)
        if not band:
            continue
        epochs = [epoch for epoch, _, _ in band]
        mean = [PERCENT * m for _, m, _ in band]
        curves.plot(epochs, mean, marker="o", color=f"C{index}", label=name)
        curves.fill_between(epochs, [m - PERCENT * s for m, (_, _, s) in zip(mean, band, strict=True)],
                            [m + PERCENT * s for m, (_, _, s) in zip(mean, band, strict=True)],
                            color=f"C{index}", alpha=BAND_ALPHA, linewidth=0)
    curves.set_xlabel("epoch")
    curves.xaxis.set_major_locator(MaxNLocator(integer=True))
    curves.set_ylabel(f"validation {CURVE_METRIC} (%), mean ± std over seeds")
    curves.set_title("validation curve")
    if curves.get_legend_handles_labels()[0]:
        curves.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: curves stay visible
    figure.tight_layout()
    figure.savefig(path, dpi=PLOT_DPI)


def bin_shares(runs: Sequence[RunResult]) -> dict[int, list[float]]:
    """``{epoch: share of elements per bin}``, each run's last histogram of the epoch, mean over seeds."""
    per_epoch: dict[int, list[list[float]]] = {}
    for run in runs:
        for epoch, counts in run.bin_counts.items():
            total = sum(counts)
            if total > 0:
                per_epoch.setdefault(epoch, []).append([c / total for c in counts])
    return {
        epoch: [statistics.fmean(column) for column in zip(*shares, strict=True)]
        for epoch, shares in sorted(per_epoch.items())
        if len({len(s) for s in shares}) == 1
    }


def plot_bins(results: Sequence[RunResult], path: Path) -> None:
    """One small panel per config that logged ``ghm_bin_counts``: share per bin (log scale), one line
    per epoch coloured from dark (first) to light (last)."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    panels = {name: shares for name, runs in _groups(results).items() if (shares := bin_shares(runs))}
    count = max(len(panels), 1)
    figure = Figure(figsize=(BINS_PANEL_INCHES[0] * count, BINS_PANEL_INCHES[1]))
    axes = figure.subplots(1, count, squeeze=False)[0]
    colours = colormaps["viridis"]
    for axis, (name, shares) in zip(axes, panels.items(), strict=False):
        epochs = list(shares)
        for position, epoch in enumerate(epochs):
            values = shares[epoch]
            centres = [(b + 0.5) / len(values) for b in range(len(values))]
            fraction = position / max(len(epochs) - 1, 1)
            axis.plot(centres, [max(v, 1e-9) for v in values], color=colours(fraction), marker=".",
                      label=f"epoch {epoch}" if position in (0, len(epochs) - 1) else None)
        axis.set_yscale("log")
        axis.set_xlabel("gradient norm g")
        axis.set_title(name, fontsize="small")
        axis.legend(fontsize="x-small")
    axes[0].set_ylabel("share of elements")
    figure.tight_layout()
    figure.savefig(path, dpi=PLOT_DPI)
