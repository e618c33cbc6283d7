"""The tuning report of a tuned study: ``tuning_<set>.md`` (each arm's chosen setting, every trial's selection
AP, the cost in machine-hours), ``tuning_<set>.csv`` (one row per trial run) and ``tuning_<set>.png`` (each
arm's tuning curve: the trials' selection AP in search order and the best so far). ``<set>`` is the
selection set. See docs/loss_study.md."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from centernet.ablation.plots import PLOT_DPI
from centernet.ablation.report import MISSING, PERCENT, report_file
from centernet.ablation.runs import RunResult
from centernet.ablation.tuning import SELECT_METRIC, SearchSpace, TrialScore, choose, edge_keys, hours

TUNING_MD = "tuning.md"
TUNING_CSV = "tuning.csv"
TUNING_PLOT = "tuning.png"


def _percent(value: float | None) -> str:
    return MISSING if value is None else f"{value * PERCENT:.1f}"


def summary_table(trials: Mapping[str, Sequence[TrialScore]], finals: Sequence[RunResult], space: SearchSpace) -> str:
    """One row per arm: its chosen setting, the selection AP it reached, the trials run and the machine-hours
    of its trials and final runs (``train_time_s`` summed: one run's wall time counts once)."""
    final_seconds: dict[str, float] = {}
    final_runs: dict[str, int] = {}
    for run in finals:
        final_seconds[run.spec.name] = final_seconds.get(run.spec.name, 0.0) + (run.train_time_s or 0.0)
        final_runs[run.spec.name] = final_runs.get(run.spec.name, 0) + 1
    lines = [f"| arm | chosen setting | selection {SELECT_METRIC} (%) | trials finished / failed / planned | "
             "at the grid's edge | tuning (machine-h) | final runs | final (machine-h) | total (machine-h) |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|"]
    total_tuning = total_final = 0.0
    for arm, scores in trials.items():
        best = choose(scores)
        finished = sum(score.mean is not None for score in scores)
        failed = sum(bool(score.failed) for score in scores)
        tuning_h = hours(math.fsum(score.train_time_s for score in scores))
        final_h = hours(final_seconds.get(arm, 0.0))
        total_tuning, total_final = total_tuning + tuning_h, total_final + final_h
        edges = ", ".join(edge_keys(space, best.point)) if best else MISSING
        lines.append(f"| {arm} | {best.point.name if best else MISSING} | {_percent(best.mean if best else None)} | "
                     f"{finished} / {failed} / {len(scores)} | {edges or 'no'} | {tuning_h:.2f} | "
                     f"{final_runs.get(arm, 0)} | {final_h:.2f} | {tuning_h + final_h:.2f} |")
    lines.append(f"| all | | | | | {total_tuning:.2f} | {len(finals)} | {total_final:.2f} | "
                 f"{total_tuning + total_final:.2f} |")
    return "\n".join(lines) + "\n"


def trials_table(trials: Mapping[str, Sequence[TrialScore]]) -> str:
    """Every point's mean selection AP per arm (columns: arms; ``*`` marks each arm's choice)."""
    arms = list(trials)
    points = [score.point for score in next(iter(trials.values()))] if trials else []
    chosen = {arm: best.point.name if (best := choose(scores)) else None for arm, scores in trials.items()}
    lines = ["| setting | " + " | ".join(arms) + " |", "|---|" + "---:|" * len(arms)]
    for index, point in enumerate(points):
        cells = []
        for arm in arms:
            score = trials[arm][index]
            text = "failed" if score.failed else _percent(score.mean)
            cells.append(f"**{text}** *" if chosen[arm] == point.name else text)
        lines.append(f"| {point.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_tuning_csv(trials: Mapping[str, Sequence[TrialScore]], space: SearchSpace, path: Path) -> None:
    """One row per arm, point and tuning seed: the point's values, the selection AP (empty: not finished),
    the failure if any, and whether the point is the arm's choice."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["arm", "point", *space.keys, "seed", SELECT_METRIC, "failed", "chosen"])
        for arm, scores in trials.items():
            best = choose(scores)
            for score in scores:
                for seed, value in score.scores.items():
                    writer.writerow([arm, score.point.name, *(v for _, v in score.point.values), seed,
                                     "" if value is None else value, "; ".join(score.failed),
                                     int(best is not None and best.point == score.point)])


def plot_tuning(trials: Mapping[str, Sequence[TrialScore]], path: Path) -> None:
    """Each arm's tuning curve: its trials' mean selection AP in search order (dots) and the best so far (line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.0, 4.0))
    for arm, scores in trials.items():
        xs = [index for index, score in enumerate(scores, start=1) if score.mean is not None]
        ys = [score.mean * PERCENT for score in scores if score.mean is not None]
        if not xs:
            continue
        best = [max(ys[: index + 1]) for index in range(len(ys))]
        (line,) = axis.step(xs, best, where="post", label=arm)
        axis.scatter(xs, ys, color=line.get_color(), s=14)
    axis.set_xlabel("trial (search order)")
    axis.set_ylabel(f"selection {SELECT_METRIC} (%)")
    axis.set_title("Tuning curves: trials (dots) and best so far (line)")
    axis.grid(alpha=0.3)
    if axis.get_legend_handles_labels()[0]:  # no trial finished yet: no curve
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=PLOT_DPI)
    plt.close(figure)


def write_tuning_report(trials: Mapping[str, Sequence[TrialScore]], finals: Sequence[RunResult],
                        space: SearchSpace, out_dir: Path, select_set: str | None) -> str:
    """Write ``tuning_<set>.md``/``.csv``/``.png`` into ``out_dir``; return the markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    where = f"`{select_set}`" if select_set else "the validation set"
    text = (f"Chosen on {where}: the highest mean {SELECT_METRIC} over the tuning seeds.\n\n"
            f"{summary_table(trials, finals, space)}\nSelection {SELECT_METRIC} (%) of every trial "
            f"(mean over the tuning seeds; * the chosen one):\n\n{trials_table(trials)}")
    (out_dir / report_file(TUNING_MD, select_set)).write_text(text)
    write_tuning_csv(trials, space, out_dir / report_file(TUNING_CSV, select_set))
    plot_tuning(trials, out_dir / report_file(TUNING_PLOT, select_set))
    return text
