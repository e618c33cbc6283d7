"""Per-arm tuning for ablation studies: a search space, its trials, and the choice of each arm's setting.

A study compares *arms* (configs). Tuned, every arm gets the same budget: every point of one grid of
config values (:class:`SearchSpace`), trained on the tuning seeds and scored on a **selection** set. The
point with the highest mean selection AP is the arm's setting (ties: the earlier point); the final seeds
of each arm then train with that setting and are reported on a different **report** set
(``tools/ablate.py --tune``, docs/loss_study.md).

Trials are ordinary runs under ``<work_dir>/<arm>/tune/<point>/seed<seed>/``, so a search resumes like the
rest of a study. A trial whose loss diverges is recorded as failed (``trial_failed.json``) and is not
tried again; the search goes on without it.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from centernet.ablation.runs import FAILED_FILE, RunResult, RunSpec, read_json

TUNE_DIR = "tune"
DIVERGED_PREFIX = "non-finite"  # FloatingPointError of centernet.engine.guards: training diverged
SELECT_METRIC = "AP"
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class TrialPoint:
    """One point of a search space: ``(dotted key, value)`` pairs in the space's key order."""

    values: tuple[tuple[str, Any], ...]

    @property
    def overrides(self) -> list[str]:
        """The point as ``KEY=VALUE`` config overrides."""
        return [f"{key}={render_value(value)}" for key, value in self.values]

    @property
    def name(self) -> str:
        """A folder name that reads as the point: ``solver.lr=0.001,loss.heatmap.weight=4`` ("default": no keys)."""
        return ",".join(self.overrides) or "default"


@dataclass(frozen=True)
class SearchSpace:
    """A grid of config values: every combination of one value per key is a trial."""

    axes: tuple[tuple[str, tuple[Any, ...]], ...]

    @property
    def keys(self) -> list[str]:
        """The dotted config keys of the axes, in order."""
        return [key for key, _ in self.axes]

    def points(self) -> list[TrialPoint]:
        """Every point of the grid, the last key varying fastest."""
        values = [options for _, options in self.axes]
        return [TrialPoint(tuple(zip(self.keys, combo, strict=True))) for combo in itertools.product(*values)]


def render_value(value: Any) -> str:
    """A value as override text that ``yaml.safe_load`` reads back as the same value."""
    return value if isinstance(value, str) else json.dumps(value)


def is_search_axis(word: str) -> bool:
    """Whether a command-line word is a search-space axis ``KEY=[v1, v2, ...]`` (a bracketed list)."""
    key, sep, value = word.partition("=")
    return bool(sep) and bool(key.strip()) and value.strip().startswith("[") and value.strip().endswith("]")


def parse_search_space(items: Sequence[str]) -> SearchSpace:
    """The grid given by ``--tune``: ``KEY=[v1,v2,...]`` words and/or YAML files mapping keys to lists.

    Values are read with ``yaml.safe_load`` (as config overrides are); a scalar is a one-value axis.

    Raises:
        ValueError: a word that is neither, a YAML file that is not a mapping of keys, an empty list, a key
            given twice or a value listed twice.
    """
    axes: dict[str, tuple[Any, ...]] = {}
    for item in items:
        if is_search_axis(item):
            key, _, text = item.partition("=")
            found = {key.strip(): _load_yaml(text, f"--tune {item}")}
        elif Path(item).is_file():
            found = _load_yaml(Path(item).read_text(), f"--tune {item}")
            if not isinstance(found, dict) or not all(isinstance(key, str) for key in found):
                raise ValueError(f"--tune {item}: expected a YAML mapping of dotted config keys to value lists")
        else:
            raise ValueError(f"--tune {item}: expected KEY=[v1,v2,...] or an existing YAML file")
        for key, options in found.items():
            options = tuple(options) if isinstance(options, list) else (options,)
            if not options:
                raise ValueError(f"--tune {key}: the list of values is empty")
            if key in axes:
                raise ValueError(f"--tune {key}: the key is given twice")
            if len({render_value(option) for option in options}) < len(options):
                raise ValueError(f"--tune {key}: a value is listed twice in {list(options)}")
            axes[key] = options
    return SearchSpace(tuple(axes.items()))


def _load_yaml(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"{where}: not valid YAML ({' '.join(str(error).split())})") from error


def trial_dir(work_dir: Path, arm: str, *, point: TrialPoint) -> Path:
    """The folder of one arm's trials at ``point``: its runs are ``seed<seed>/`` inside."""
    return work_dir / arm / TUNE_DIR / point.name


# ----------------------------------------------------------------------------- failed trials
def is_divergence(error: str) -> bool:
    """Whether a run's one-line error says that training diverged (a non-finite loss or weights)."""
    return error.startswith(DIVERGED_PREFIX)


def record_failure(run_dir: Path, error: str) -> None:
    """Mark a diverged trial as failed, so that a resumed search does not train it again."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / FAILED_FILE).write_text(json.dumps({"error": error}, indent=2))


def recorded_failure(run_dir: Path) -> str | None:
    """The error of a trial recorded as failed (``None``: not recorded)."""
    path = run_dir / FAILED_FILE
    if not path.is_file():
        return None
    return str(read_json(path, expected=dict).get("error", "failed"))


# ----------------------------------------------------------------------------- selection
@dataclass
class TrialScore:
    """One arm's trials at one point: the selection metric of each tuning seed (``None``: failed or not run)."""

    arm: str
    point: TrialPoint
    scores: dict[int, float | None]
    train_time_s: float
    failed: list[str]

    @property
    def complete(self) -> bool:
        """Every tuning seed finished or recorded as failed."""
        return all(score is not None for score in self.scores.values()) or bool(self.failed)

    @property
    def mean(self) -> float | None:
        """Mean selection metric over the tuning seeds; ``None`` unless all finished (a failure: ``None``)."""
        values = list(self.scores.values())
        if self.failed or any(value is None for value in values):
            return None
        return math.fsum(v for v in values if v is not None) / len(values)


def score_trials(arm: str, points: Sequence[TrialPoint], results: Mapping[tuple[str, int], RunResult | None],
                 failures: Mapping[tuple[str, int], str | None], seeds: Sequence[int]) -> list[TrialScore]:
    """The trials of one arm in point order; ``results``/``failures`` are keyed by ``(point name, seed)``."""
    scores = []
    for point in points:
        runs = {seed: results.get((point.name, seed)) for seed in seeds}
        failed = [error for seed in seeds if (error := failures.get((point.name, seed))) is not None]
        scores.append(TrialScore(
            arm, point, {seed: None if run is None else run.metrics.get(SELECT_METRIC) for seed, run in runs.items()},
            math.fsum(run.train_time_s or 0.0 for run in runs.values() if run is not None), failed))
    return scores


def choose(trials: Sequence[TrialScore]) -> TrialScore | None:
    """The trial with the highest mean selection metric (the earlier point on a tie); ``None`` if none finished."""
    best: TrialScore | None = None
    for trial in trials:
        if trial.mean is not None and (best is None or best.mean is None or trial.mean > best.mean):
            best = trial
    return best


def edge_keys(space: SearchSpace, point: TrialPoint) -> list[str]:
    """Keys of three or more values whose chosen value is the first or the last: the best may lie outside."""
    chosen = dict(point.values)
    return [key for key, options in space.axes if len(options) >= 3 and chosen[key] in (options[0], options[-1])]


def hours(seconds: float) -> float:
    """Seconds as hours (the machine-hours of the tuning report)."""
    return seconds / SECONDS_PER_HOUR


def spec_key(spec: RunSpec) -> tuple[str, int]:
    """``(point name, seed)`` of a trial run spec (its folder is ``<arm>/tune/<point>/seed<seed>``)."""
    return spec.run_dir.parent.name, spec.seed
