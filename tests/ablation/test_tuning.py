"""Tuning pieces of an ablation study: the search space, trial names, failed trials, the choice and its report."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from centernet.ablation import RunResult, RunSpec
from centernet.ablation.tuning import (
    TrialPoint,
    choose,
    edge_keys,
    is_divergence,
    is_search_axis,
    parse_search_space,
    record_failure,
    recorded_failure,
    score_trials,
    trial_dir,
)
from centernet.ablation.tuning_report import summary_table, trials_table, write_tuning_report
from centernet.config import load_config
from centernet.config.loader import parse_overrides
from tests.conftest import REPO, TUNING_SPACES


def test_grid_points_and_their_overrides(tmp_path: Path) -> None:
    space_file = tmp_path / "space.yaml"
    space_file.write_text("loss.heatmap.weight: [0.25, 1, 4]\nsolver.optimizer: adam\n")
    space = parse_search_space(["solver.lr=[5e-4, 1.0e-3]", str(space_file)])
    assert space.keys == ["solver.lr", "loss.heatmap.weight", "solver.optimizer"]
    points = space.points()
    assert len(points) == 2 * 3 * 1  # the last key varies fastest; a scalar is a one-value axis
    assert points[0].overrides == ["solver.lr=5e-4", "loss.heatmap.weight=0.25", "solver.optimizer=adam"]
    assert points[1].name == "solver.lr=5e-4,loss.heatmap.weight=1,solver.optimizer=adam"
    assert points[5].overrides[:2] == ["solver.lr=0.001", "loss.heatmap.weight=4"]
    # the override text reads back as the value (5e-4 stays the text the config loader converts)
    assert parse_overrides(points[5].overrides) == {"solver": {"lr": 0.001, "optimizer": "adam"},
                                                    "loss": {"heatmap": {"weight": 4}}}
    assert trial_dir(tmp_path, "arm", point=points[0]) == tmp_path / "arm" / "tune" / points[0].name
    assert parse_search_space(["solver.lr=[0.001]"]).points() == [TrialPoint((("solver.lr", 0.001),))]
    assert is_search_axis("solver.lr=[1, 2]") and not is_search_axis("solver.lr=1") and not is_search_axis("[1]")


@pytest.mark.parametrize(("words", "message"), [
    (["solver.lr=[]"], "--tune solver.lr: the list of values is empty"),
    (["solver.lr=[1, 1]"], r"--tune solver.lr: a value is listed twice in \[1, 1\]"),
    (["solver.lr=[1]", "solver.lr=[2]"], "--tune solver.lr: the key is given twice"),
    (["solver.lr=[1, "], "expected KEY=.* or an existing YAML file"),
    (["no_such_file.yaml"], "--tune no_such_file.yaml: expected KEY=\\[v1,v2,...\\] or an existing YAML file"),
])  # fmt: skip
def test_bad_search_spaces(words: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_search_space(words)


def test_a_yaml_space_must_map_keys(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ValueError, match=f"--tune {path}: expected a YAML mapping of dotted config keys"):
        parse_search_space([str(path)])


def result(arm: str, ap: float | None, seconds: float, run_dir: Path) -> RunResult:
    return RunResult(RunSpec(arm, "focal", 0, run_dir), {"AP": ap}, None, seconds)


def test_choice_is_the_best_mean_and_the_earlier_point_on_a_tie(tmp_path: Path) -> None:
    points = parse_search_space(["solver.lr=[1, 2, 3]"]).points()
    names = [point.name for point in points]
    results = {(names[0], 0): result("a", 0.2, 10.0, tmp_path), (names[0], 1): result("a", 0.4, 10.0, tmp_path),
               (names[1], 0): result("a", 0.5, 20.0, tmp_path), (names[1], 1): result("a", 0.1, 20.0, tmp_path),
               (names[2], 0): result("a", 0.3, 5.0, tmp_path)}  # seed 1 of point 3 not run yet
    trials = score_trials("a", points, results, {}, [0, 1])
    assert [trial.mean for trial in trials] == [pytest.approx(0.3), pytest.approx(0.3), None]
    assert [trial.complete for trial in trials] == [True, True, False]
    assert [trial.train_time_s for trial in trials] == [20.0, 40.0, 5.0]
    best = choose(trials)
    assert best is not None and best.point == points[0]  # a tie: the earlier point
    assert edge_keys(parse_search_space(["solver.lr=[1, 2, 3]"]), points[0]) == ["solver.lr"]
    assert edge_keys(parse_search_space(["solver.lr=[1, 2, 3]"]), points[1]) == []
    failed = score_trials("a", points, results, {(names[2], 1): "non-finite loss"}, [0, 1])
    assert failed[2].complete and failed[2].mean is None  # a failed trial counts as done, never as chosen
    assert choose(score_trials("a", points, {}, {}, [0])) is None


def test_failed_trials_are_recorded_once(tmp_path: Path) -> None:
    run_dir = tmp_path / "arm" / "tune" / "solver.lr=9" / "seed0"
    assert recorded_failure(run_dir) is None
    assert is_divergence("non-finite loss at epoch 2, iteration 4: {...}") and not is_divergence("disk full")
    record_failure(run_dir, "non-finite loss at epoch 2")
    assert recorded_failure(run_dir) == "non-finite loss at epoch 2"


def test_tuning_report_tables_cost_and_plot(tmp_path: Path) -> None:
    space = parse_search_space(["solver.lr=[1, 2, 3]"])
    points = space.points()
    names = [point.name for point in points]
    trials = {
        "a": score_trials("a", points, {(n, 0): result("a", ap, 1800.0, tmp_path)
                                        for n, ap in zip(names, (0.1, 0.3, 0.2), strict=True)}, {}, [0]),
        "b": score_trials("b", points, {(names[0], 0): result("b", 0.05, 3600.0, tmp_path)},
                          {(names[1], 0): "non-finite loss", (names[2], 0): "non-finite loss"}, [0]),
    }
    finals = [result("a", 0.25, 900.0, tmp_path), result("a", 0.27, 900.0, tmp_path)]
    summary = summary_table(trials, finals, space)
    assert "| a | solver.lr=2 | 30.0 | 3 / 0 / 3 | no | 1.50 | 2 | 0.50 | 2.00 |" in summary
    assert "| b | solver.lr=1 | 5.0 | 1 / 2 / 3 | solver.lr | 1.00 | 0 | 0.00 | 1.00 |" in summary
    assert "| all | | | | | 2.50 | 2 | 0.50 | 3.00 |" in summary
    table = trials_table(trials)
    assert "| solver.lr=2 | **30.0** * | failed |" in table and "| solver.lr=1 | 10.0 | **5.0** * |" in table
    write_tuning_report(trials, finals, space, tmp_path / "out", "pick")
    assert (tmp_path / "out" / "tuning_pick.png").read_bytes().startswith(b"\x89PNG")
    with (tmp_path / "out" / "tuning_pick.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["arm"], r["solver.lr"], r["AP"], r["failed"], r["chosen"]) for r in rows] == [
        ("a", "1", "0.1", "", "0"), ("a", "2", "0.3", "", "1"), ("a", "3", "0.2", "", "0"),
        ("b", "1", "0.05", "", "1"), ("b", "2", "", "non-finite loss", "0"), ("b", "3", "", "non-finite loss", "0")]


@pytest.mark.parametrize("path", TUNING_SPACES, ids=[p.name for p in TUNING_SPACES])
def test_shipped_search_spaces_load_on_the_trees_recipe(path: Path) -> None:
    points = parse_search_space([str(path)]).points()
    assert len(points) >= 9  # the budget: at least 9 trials per loss
    for point in points:
        load_config(REPO / "configs" / "trees_efficientnet_lite0.yaml", point.overrides)
