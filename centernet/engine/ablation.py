"""Ablation studies: the state of each config x seed run, and the tables and plot that compare them.

A study lives in one folder, ``<work_dir>/<config stem>/seed<seed>/`` per run (an ordinary training
work dir plus ``run_info.json``: the wall time of the run, summed over interrupted sessions). This
module reads those folders back and writes ``ablation.csv`` (one row per run), ``ablation.md`` (one
row per config, mean ± std over seeds) and ``ablation.png``. It never trains: ``tools/ablate.py`` does.
"""

from __future__ import annotations

import csv
import json
import logging
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from centernet.engine.checkpoint import load_checkpoint

logger = logging.getLogger(__name__)

RUN_INFO_FILE = "run_info.json"
METRICS_FILE = Path("eval") / "metrics.json"
LAST_CHECKPOINT = Path("checkpoints") / "last.pth"
JSONL_FILE = "metrics.jsonl"
CSV_FILE = "ablation.csv"
MARKDOWN_FILE = "ablation.md"
PLOT_FILE = "ablation.png"

CSV_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # per-run columns of ablation.csv
TABLE_METRICS = ("AP", "AP50", "APs", "APm", "APl")  # mean ± std columns of ablation.md
CURVE_METRIC = "AP"  # validation metric plotted over epochs
PERCENT = 100.0  # metrics are fractions in [0, 1]; tables show percent
MISSING = "–"  # table cell for a value that does not exist (std of one seed, metric never defined)
PLOT_SIZE_INCHES = (12.0, 4.5)
PLOT_DPI = 100
ERROR_BAR_CAPSIZE = 4.0


@dataclass(frozen=True)
class RunSpec:
    """Where one run of a study lives and what it is.

    Args:
        name: the config name (file stem); one table row per name.
        loss_type: ``loss.heatmap.type`` of the run's config.
        seed: ``runtime.seed`` of the run.
        run_dir: the run's work dir.
    """

    name: str
    loss_type: str
    seed: int
    run_dir: Path


@dataclass
class RunResult:
    """What one finished run reports.

    Attributes:
        metrics: final COCO metrics (fractions in [0, 1]; ``None`` where COCO left a metric undefined).
        final_loss: ``loss`` of the last ``train`` record of ``metrics.jsonl`` (``None`` without one).
        train_time_s: wall time of the run from ``run_info.json`` (``None`` without that file).
        val_curve: validation ``AP`` per epoch (the last record of an epoch wins, e.g. after a resume).
    """

    spec: RunSpec
    metrics: dict[str, float | None]
    final_loss: float | None
    train_time_s: float | None
    val_curve: dict[int, float | None] = field(default_factory=dict)


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


# ----------------------------------------------------------------------------- run state
RUNTIME_ONLY_KEYS = ("runtime.device", "runtime.threads", "runtime.log_interval", "data.workers")
"""Config keys that may change when a run is resumed: they do not change what is trained."""


@dataclass(frozen=True)
class RunStatus:
    """How far a run got.

    Attributes:
        completed_epochs: ``epoch`` of ``checkpoints/last.pth`` (0 without one).
        done: all epochs completed and ``eval/metrics.json`` written.
        config: the config stored in ``last.pth`` (``None`` without one or when it holds none).
    """

    completed_epochs: int
    done: bool
    config: dict[str, Any] | None = None


def run_status(run_dir: Path, epochs: int) -> RunStatus:
    """Inspect a run folder before (re)starting it.

    A run is done when ``eval/metrics.json`` exists and ``checkpoints/last.pth`` holds ``epoch == epochs``.

    Raises:
        ValueError: the checkpoint is unreadable, has no integer ``epoch`` or is past ``epochs``.
    """
    last = run_dir / LAST_CHECKPOINT
    if not last.is_file():
        return RunStatus(completed_epochs=0, done=False)
    state = load_checkpoint(last)
    completed = state.get("epoch")
    if not isinstance(completed, int) or isinstance(completed, bool):
        raise ValueError(f"{last}: expected an integer 'epoch' entry, got {completed!r}")
    if completed > epochs:
        raise ValueError(
            f"{last} has {completed} completed epochs but solver.epochs is {epochs}; use another --work-dir"
        )
    config = state.get("config")
    return RunStatus(
        completed_epochs=completed,
        done=completed == epochs and (run_dir / METRICS_FILE).is_file(),
        config=config if isinstance(config, dict) else None,
    )


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any], ignore: Iterable[str] = ()) -> list[str]:
    """Dotted keys whose values differ between two nested config dicts (``ignore``: dotted keys to skip)."""
    ignored = set(ignore)
    differences: list[str] = []

    def walk(a: Any, b: Any, key: str) -> None:
        if key in ignored:
            return
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for name in sorted(set(a) | set(b)):
                walk(a.get(name), b.get(name), f"{key}.{name}" if key else str(name))
        elif a != b:
            differences.append(key)

    walk(saved, current, "")
    return differences


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """The run's ``run_info.json`` as a dict (empty when there is none)."""
    path = run_dir / RUN_INFO_FILE
    if not path.is_file():
        return {}
    return _read_json(path, expected=dict)


def record_run_time(run_dir: Path, seconds: float, *, finished: bool, resumed: bool) -> dict[str, Any]:
    """Add one session's wall time to ``run_info.json`` (a fresh run starts from zero) and return the info.

    Args:
        run_dir: the run folder.
        seconds: wall time of this session (build + train + evaluate).
        finished: the run completed all its epochs in this session.
        resumed: this session continued an earlier one, whose time is kept and added to.
    """
    info = read_run_info(run_dir) if resumed else {}
    info = {
        "train_time_s": float(info.get("train_time_s", 0.0)) + seconds,
        "sessions": int(info.get("sessions", 0)) + 1,
        "finished": finished,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return info


# --------------------------------------------------------------------------- collecting
def collect_run(spec: RunSpec) -> RunResult:
    """Read a finished run's final metrics, last training loss, validation curve and wall time.

    Raises:
        FileNotFoundError: the run has no ``eval/metrics.json``.
        ValueError: a file is not valid JSON (the message names the file and line).
    """
    metrics_path = spec.run_dir / METRICS_FILE
    if not metrics_path.is_file():
        raise FileNotFoundError(f"run {spec.run_dir} has no {METRICS_FILE} (did it finish?)")
    raw = _read_json(metrics_path, expected=dict)
    metrics = {name: _optional_float(raw.get(name), f"{metrics_path}: {name}") for name in CSV_METRICS}

    final_loss: float | None = None
    curve: dict[int, float | None] = {}
    jsonl_path = spec.run_dir / JSONL_FILE
    for number, record in _read_jsonl(jsonl_path):
        where = f"{jsonl_path}:{number}"
        if record.get("type") == "train" and "loss" in record:
            final_loss = _optional_float(record["loss"], f"{where}: loss")
        elif record.get("type") == "val" and isinstance(record.get("epoch"), int):
            curve[record["epoch"]] = _optional_float(record.get(CURVE_METRIC), f"{where}: {CURVE_METRIC}")
    time_s = _optional_float(read_run_info(spec.run_dir).get("train_time_s"), f"{spec.run_dir / RUN_INFO_FILE}")
    return RunResult(spec, metrics, final_loss, time_s, dict(sorted(curve.items())))


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
def _optional_float(value: Any, where: str) -> float | None:
    """``value`` as a float (``None`` stays ``None``); ``where`` names the file and key in errors."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"{where}: expected a number or null, got {value!r}")


def _read_json(path: Path, *, expected: type) -> Any:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, expected):
        raise ValueError(f"{path}: expected a JSON {expected.__name__}, got {type(data).__name__}")
    return data


def _read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """The ``(line number, record)`` pairs of a ``metrics.jsonl``.

    A missing file gives no records; a line that is not a JSON object (e.g. cut short when a run was
    killed mid-write) is skipped. Both with a warning: the rest of the study still gets reported.
    """
    if not path.is_file():
        logger.warning("%s is missing: no final loss or validation curve for this run", path)
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append((number, record))
        else:
            logger.warning("%s:%d is not a JSON object; skipped", path, number)
    return records
