"""Seed statistics by hand: t intervals, differences paired by seed, curve bands, GHM bin shares."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from matplotlib.image import imread

from centernet.ablation import (
    BINS_PLOT_FILE,
    PLOT_DPI,
    RunResult,
    RunSpec,
    bin_shares,
    collect_run,
    mean_band,
    paired_difference,
    t_interval,
    write_reports,
)
from tests.ablation.test_runs import PNG_SIGNATURE, make_run, metrics, train, val

T_975_2 = 4.3027  # Student's t, 0.975 quantile, 2 degrees of freedom (tables)


def result(name: str, seed: int, ap: float | None) -> RunResult:
    return RunResult(RunSpec(name, "focal", seed, Path(name)), {"AP": ap}, None, None)


def test_t_interval_hand_computed() -> None:
    interval = t_interval([0.2, 0.4, 0.3])  # mean 0.3, s = 0.1
    half = T_975_2 * 0.1 / math.sqrt(3)
    assert interval.n == 3 and interval.mean == pytest.approx(0.3) and interval.std == pytest.approx(0.1)
    assert (interval.low, interval.high) == pytest.approx((0.3 - half, 0.3 + half), abs=1e-5)
    assert t_interval([0.5, None]) == t_interval([0.5])
    one = t_interval([0.5])
    assert (one.n, one.mean, one.std, one.low, one.high) == (1, 0.5, None, None, None)
    assert t_interval([]).mean is None
    with pytest.raises(ValueError, match="confidence"):
        t_interval([1.0, 2.0], confidence=1.0)


def test_paired_difference_of_three_seeds() -> None:
    results = [
        result("ghm", 0, 0.30), result("ghm", 1, 0.34), result("ghm", 2, 0.35), result("ghm", 3, 0.90),
        result("base", 2, 0.32), result("base", 0, 0.28), result("base", 1, 0.30), result("base", 4, 0.10),
    ]  # fmt: skip
    diff = paired_difference(results, "ghm", "base", "AP")
    # seeds 0, 1, 2 pair up: differences 0.02, 0.04, 0.03 -> mean 0.03, s = 0.01
    half = T_975_2 * 0.01 / math.sqrt(3)  # 0.024841
    assert diff.n == 3 and diff.mean == pytest.approx(0.03) and diff.std == pytest.approx(0.01)
    assert (diff.low, diff.high) == pytest.approx((0.03 - half, 0.03 + half), abs=1e-5)
    assert (diff.low, diff.high) == pytest.approx((0.005159, 0.054841), abs=1e-5)


def test_mean_band_and_bin_shares() -> None:
    band = mean_band([{1: 0.1, 2: 0.3}, {1: 0.3, 2: None}, {3: 0.5}])
    assert band == [(1, pytest.approx(0.2), pytest.approx(math.sqrt(0.02))), (2, 0.3, 0.0), (3, 0.5, 0.0)]
    runs = [result("g", 0, 0.1), result("g", 1, 0.2)]
    runs[0].bin_counts = {1: [3, 1], 2: [1, 1]}
    runs[1].bin_counts = {1: [1, 1]}
    assert bin_shares(runs) == {1: [pytest.approx(0.625), pytest.approx(0.375)], 2: [0.5, 0.5]}


def test_ghm_histograms_and_switch_are_collected_and_plotted(tmp_path: Path) -> None:
    def ghm_train(epoch: int, counts: list[int], switch: int | None = None) -> dict:
        record = {**train(epoch, 1.0), "ghm_bin_counts": counts}
        return record if switch is None else {**record, "ghm_switch_epoch": switch}

    specs = [
        make_run(tmp_path, "ghm", seed, loss_type="ghm_c", metrics=metrics(0.3 + seed / 10),
                 records=[ghm_train(1, [9, 1]), ghm_train(1, [8, 2]), val(1, 0.1),
                          ghm_train(2, [6, 4], switch=1), val(2, 0.3)])
        for seed in (0, 1)
    ]  # fmt: skip
    results = [collect_run(spec) for spec in specs]
    assert results[0].bin_counts == {1: [8, 2], 2: [6, 4]}  # the last record of each epoch
    assert results[0].switch_epoch == 1
    out = tmp_path / "report"
    write_reports(results, out)
    png = out / BINS_PLOT_FILE
    assert png.read_bytes()[: len(PNG_SIGNATURE)] == PNG_SIGNATURE
    assert imread(png).shape[0] == 2.6 * PLOT_DPI
    assert "ghm,ghm_c,0," in (out / "ablation.csv").read_text() and ",1\n" in (out / "ablation.csv").read_text()
