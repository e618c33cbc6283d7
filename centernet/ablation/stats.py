"""Seed statistics of an ablation study: t confidence intervals and differences paired by seed.

With ``n`` values, mean ``m`` and sample standard deviation ``s`` (ddof = 1), the two-sided
``confidence`` interval of the mean is ``m ± t_{(1 + confidence) / 2, n - 1} * s / sqrt(n)``
(Student's t). Two configs are compared on the seeds both have: the per-seed differences
``config - baseline`` get the same interval (a paired t interval; see ``docs/loss_study.md``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from centernet.ablation.runs import RunResult

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """Mean, sample std and two-sided t interval of ``n`` values; ``None`` where undefined (n < 2)."""

    n: int
    mean: float | None
    std: float | None
    low: float | None
    high: float | None


def t_interval(values: Iterable[float | None], confidence: float = CONFIDENCE) -> Interval:
    """The t interval of the mean of the non-``None`` values.

    Raises:
        ValueError: ``confidence`` is not in (0, 1).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    present = [float(v) for v in values if v is not None]
    n = len(present)
    if n == 0:
        return Interval(0, None, None, None, None)
    mean = statistics.fmean(present)
    if n == 1:
        return Interval(1, mean, None, None, None)
    from scipy import stats  # imported here: only the reports need it

    std = statistics.stdev(present)
    half = float(stats.t.ppf((1.0 + confidence) / 2.0, n - 1)) * std / math.sqrt(n)
    return Interval(n, mean, std, mean - half, mean + half)


def values_by_seed(results: Sequence[RunResult], name: str, metric: str) -> dict[int, float]:
    """``{seed: metric}`` of config ``name``'s runs that report ``metric``."""
    out: dict[int, float] = {}
    for run in results:
        value = run.metrics.get(metric)
        if run.spec.name == name and value is not None:
            out[run.spec.seed] = value
    return out


def paired_difference(
    results: Sequence[RunResult], name: str, baseline: str, metric: str, confidence: float = CONFIDENCE
) -> Interval:
    """The t interval of ``metric(name) - metric(baseline)`` over the seeds both configs have."""
    ours, theirs = values_by_seed(results, name, metric), values_by_seed(results, baseline, metric)
    return t_interval([ours[seed] - theirs[seed] for seed in sorted(set(ours) & set(theirs))], confidence)


def mean_band(curves: Iterable[Mapping[int, float | None]]) -> list[tuple[int, float, float]]:
    """``(epoch, mean, std)`` per epoch over the runs' curves (std 0 with one value; epochs without a value skipped)."""
    return [
        (epoch, statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)
        for epoch, values in values_per_epoch(curves).items()
    ]


def values_per_epoch(curves: Iterable[Mapping[int, float | None]]) -> dict[int, list[float]]:
    """The defined values of the runs' curves grouped by epoch, epochs in increasing order."""
    per_epoch: dict[int, list[float]] = {}
    for curve in curves:
        for epoch, value in curve.items():
            if value is not None:
                per_epoch.setdefault(epoch, []).append(value)
    return dict(sorted(per_epoch.items()))
