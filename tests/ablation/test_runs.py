"""Ablation reports on hand-made run folders: run state, mean ± std, markdown, CSV and the plot."""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest
from matplotlib.image import imread

from centernet.ablation import (
    PLOT_DPI,
    PLOT_SIZE_INCHES,
    RunSpec,
    collect_run,
    config_differences,
    epochs_to_reach,
    export_record,
    format_mean_std,
    markdown_table,
    mean_std,
    record_files,
    record_run_time,
    report_file,
    run_status,
    summarize,
    write_reports,
)
from centernet.config import ConfigError
from centernet.engine.checkpoint import save_checkpoint

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_run(
    root: Path,
    name: str,
    seed: int,
    *,
    loss_type: str = "focal",
    metrics: dict[str, Any],
    records: list[dict[str, Any]] | None = None,
    train_time_s: float | None = None,
) -> RunSpec:
    """Write the files a finished run leaves (eval/metrics.json, metrics.jsonl, run_info.json) by hand."""
    run_dir = root / name / f"seed{seed}"
    (run_dir / "eval").mkdir(parents=True)
    full = {"metric": "coco", "AP75": 0.0, "AR1": 0.0, "AR10": 0.0, "AR100": 0.0, "per_class": {}, **metrics}
    (run_dir / "eval" / "metrics.json").write_text(json.dumps(full))
    if records is not None:
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if train_time_s is not None:
        (run_dir / "run_info.json").write_text(json.dumps({"train_time_s": train_time_s, "sessions": 1}))
    return RunSpec(name=name, loss_type=loss_type, seed=seed, run_dir=run_dir)


def train(epoch: int, loss: float) -> dict[str, Any]:
    return {"type": "train", "epoch": epoch, "iter": epoch * 10, "loss": loss, "heatmap": loss, "lr": 1e-3}


def val(epoch: int, ap: float | None) -> dict[str, Any]:
    return {"type": "val", "epoch": epoch, "iter": epoch * 10, "AP": ap, "AP50": ap}


def metrics(ap: float, *, apl: float | None = None, ap50: float = 0.5) -> dict[str, Any]:
    return {"AP": ap, "AP50": ap50, "AP75": 0.1, "APs": 0.05, "APm": ap, "APl": apl}


@pytest.fixture
def study(tmp_path: Path) -> list[RunSpec]:
    """Config ``pr_focal`` with seeds 0 and 1, config ``bce`` with seed 0 only."""
    return [
        make_run(
            tmp_path,
            "pr_focal",
            0,
            loss_type="penalty_reduced_focal",
            metrics=metrics(0.30, apl=0.8),
            records=[train(1, 2.0), val(1, 0.10), {"type": "ghm", "epoch": 1}, train(2, 1.5), val(2, 0.30)],
            train_time_s=10.0,
        ),
        make_run(
            tmp_path,
            "pr_focal",
            1,
            loss_type="penalty_reduced_focal",
            metrics=metrics(0.40),  # APl None: COCO found no large objects
            # resumed in epoch 2: the first epoch-2 records were logged twice; the last ones count
            records=[train(1, 2.2), val(1, 0.20), train(2, 9.9), val(2, 0.0), train(2, 1.7), val(2, 0.40)],
            train_time_s=14.0,
        ),
        make_run(
            tmp_path,
            "bce",
            0,
            loss_type="bce",
            metrics=metrics(0.20),
            records=[train(1, 0.3), val(1, None), train(2, 0.25), val(2, 0.20)],
        ),
    ]


def test_mean_std_hand_computed() -> None:
    assert mean_std([]) == (None, None)
    assert mean_std([None, None]) == (None, None)
    assert mean_std([0.25]) == (0.25, None)
    mean, std = mean_std([0.1, 0.2, 0.4])
    assert mean == pytest.approx(0.7 / 3)
    # sample std: deviations from 7/30 are -2/15, -1/30, 1/6; sum of squares / (3 - 1), sqrt
    assert std == pytest.approx(math.sqrt(((2 / 15) ** 2 + (1 / 30) ** 2 + (1 / 6) ** 2) / 2), rel=1e-9)
    assert std == pytest.approx(0.1527525, abs=1e-7)
    mean, std = mean_std([0.2, None, 0.4])  # None is skipped, not counted as 0
    assert mean == pytest.approx(0.3) and std == pytest.approx(math.sqrt(0.02))


def test_format_mean_std() -> None:
    assert format_mean_std(0.123, 0.004, scale=100) == "12.3 ± 0.4"
    assert format_mean_std(0.5, None, scale=100) == "50.0 ± –"
    assert format_mean_std(None, None) == "–"
    assert format_mean_std(1.23456, 0.01, digits=4) == "1.2346 ± 0.0100"


def test_collect_run_reads_final_metrics_last_loss_and_curve(study: list[RunSpec]) -> None:
    first = collect_run(study[0])
    assert first.metrics == {"AP": 0.30, "AP50": 0.5, "AP75": 0.1, "APs": 0.05, "APm": 0.30, "APl": 0.8}
    assert first.final_loss == 1.5 and first.train_time_s == 10.0
    assert first.val_curve == {1: 0.10, 2: 0.30}
    resumed = collect_run(study[1])
    assert resumed.final_loss == 1.7 and resumed.val_curve == {1: 0.20, 2: 0.40}
    assert resumed.metrics["APl"] is None
    no_info = collect_run(study[2])
    assert no_info.train_time_s is None and no_info.val_curve == {1: None, 2: 0.20}


def test_summary_and_markdown_table(study: list[RunSpec]) -> None:
    summaries = summarize([collect_run(spec) for spec in study])
    assert [s.name for s in summaries] == ["pr_focal", "bce"]  # order of first appearance
    focal, bce = summaries
    assert focal.seeds == [0, 1] and focal.loss_type == "penalty_reduced_focal"
    assert focal.mean["AP"] == pytest.approx(0.35) and focal.std["AP"] == pytest.approx(math.sqrt(0.005))
    assert focal.mean["APl"] == 0.8 and focal.std["APl"] is None  # one defined value out of two seeds
    assert focal.final_loss[0] == pytest.approx(1.6) and focal.final_loss[1] == pytest.approx(math.sqrt(0.02))
    assert focal.train_time_s == pytest.approx(12.0)
    assert bce.std["AP"] is None and bce.train_time_s is None

    # t interval of AP over 2 seeds: 0.35 ± t(0.975, 1) * sqrt(0.005) / sqrt(2) = 0.35 ± 12.7062 * 0.05
    assert (focal.interval.low, focal.interval.high) == pytest.approx((0.35 - 0.63531, 0.35 + 0.63531), abs=1e-5)
    assert focal.difference is None  # the baseline (first config)
    assert bce.difference.n == 1 and bce.difference.mean == pytest.approx(-0.10) and bce.difference.low is None

    lines = markdown_table(summaries).splitlines()
    assert lines[0] == (
        "| config | heatmap loss | seeds | AP (%) | AP 95% CI | ΔAP vs pr_focal (pp) | Δ 95% CI | pairs "
        "| epoch AP ≥ pr_focal's final (seeds) | AP50 (%) | APs (%) | APm (%) | APl (%) | final loss | train time (s) |"
    )
    assert len(lines) == 4
    # std of AP: sqrt(0.005) = 0.0707 -> 7.1 %; AP50 identical over seeds -> std 0.0
    # the baseline's mean final AP is 0.35: seed 0 (0.10, 0.30) never reaches it, seed 1 (0.20, 0.40) at epoch 2
    assert lines[2] == (
        "| pr_focal | penalty_reduced_focal | 2 | 35.0 ± 7.1 | [-28.5, 98.5] | baseline | – | – | 2.0 (1/2) "
        "| 50.0 ± 0.0 | 5.0 ± 0.0 | 35.0 ± 7.1 | 80.0 ± – | 1.6000 ± 0.1414 | 12.0 |"
    )
    # bce seed 0 against pr_focal seed 0: 20.0 - 30.0; one pair, no interval
    assert lines[3] == (
        "| bce | bce | 1 | 20.0 ± – | – | -10.0 | – | 1 | never (0/1) | 50.0 ± – | 5.0 ± – | 20.0 ± – | – "
        "| 0.2500 ± – | – |"
    )
    with pytest.raises(ValueError, match="baseline 'nope' is not one of the configs"):
        summarize([collect_run(spec) for spec in study], baseline="nope")
    against_bce = summarize([collect_run(spec) for spec in study], baseline="bce")
    assert against_bce[1].difference is None and against_bce[0].difference.mean == pytest.approx(0.10)
    # bce's final AP 0.20: pr_focal seed 0 reaches it at epoch 2 (0.30), seed 1 at epoch 1 (0.20 >= 0.20)
    assert against_bce[0].epochs_to_baseline == [2, 1] and against_bce[1].epochs_to_baseline == [2]


def test_epochs_to_reach() -> None:
    assert epochs_to_reach({1: 0.1, 2: 0.3, 3: 0.2, 4: 0.5}, 0.25) == 2  # the first epoch, not the last
    assert epochs_to_reach({3: 0.5, 1: None, 2: 0.4}, 0.4) == 2  # sorted by epoch; None never counts
    assert epochs_to_reach({1: 0.1}, 0.2) is None and epochs_to_reach({}, 0.0) is None
    assert epochs_to_reach({1: 0.01632891321915}, 0.016329) == 1  # the final AP as metrics.json rounds it


def test_named_val_set_run_reads_its_own_metrics_and_curve(tmp_path: Path) -> None:
    """With named validation sets a run writes eval/<set>/metrics.json and tags its val records with "set"."""
    run_dir = tmp_path / "trees" / "seed0"
    for name, ap in (("yell", 0.4), ("cross_site", 0.1)):
        (run_dir / "eval" / name).mkdir(parents=True)
        (run_dir / "eval" / name / "metrics.json").write_text(json.dumps(metrics(ap)))
    records = [train(1, 2.0), {**val(1, 0.3), "set": "yell"}, {**val(1, 0.05), "set": "cross_site"},
               {**val(2, 0.4), "set": "yell"}, {**val(2, 0.1), "set": "cross_site"}]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    yell = collect_run(RunSpec("trees", "focal", 0, run_dir, val_set="yell"))
    cross = collect_run(RunSpec("trees", "focal", 0, run_dir, val_set="cross_site"))
    assert (yell.metrics["AP"], yell.val_curve) == (0.4, {1: 0.3, 2: 0.4})
    assert (cross.metrics["AP"], cross.val_curve) == (0.1, {1: 0.05, 2: 0.1})
    with pytest.raises(FileNotFoundError, match=r"eval/other/metrics\.json"):
        collect_run(RunSpec("trees", "focal", 0, run_dir, val_set="other"))
    out = tmp_path / "report"
    write_reports([yell], out, tag="yell")
    assert sorted(path.name for path in out.iterdir()) == ["ablation_curves_yell.csv", "ablation_yell.csv",
                                                           "ablation_yell.md", "ablation_yell.png"]
    assert report_file("ablation.md", None) == "ablation.md"


def test_write_reports_csv_and_png(study: list[RunSpec], tmp_path: Path) -> None:
    results = [collect_run(spec) for spec in study]
    out = tmp_path / "report"
    table = write_reports(results, out)
    assert (out / "ablation.md").read_text() == table

    with (out / "ablation.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        "config", "heatmap_loss", "seed", "AP", "AP50", "AP75", "APs", "APm", "APl", "final_loss", "train_time_s",
        "ghm_switch_epoch",
    ]  # fmt: skip
    assert [(r["config"], r["heatmap_loss"], r["seed"]) for r in rows] == [
        ("pr_focal", "penalty_reduced_focal", "0"),
        ("pr_focal", "penalty_reduced_focal", "1"),
        ("bce", "bce", "0"),
    ]
    assert float(rows[0]["AP"]) == 0.30 and float(rows[0]["APl"]) == 0.8 and float(rows[0]["final_loss"]) == 1.5
    assert rows[1]["APl"] == "" and rows[2]["train_time_s"] == ""  # None -> empty cell
    assert float(rows[1]["train_time_s"]) == 14.0

    png = out / "ablation.png"
    assert png.read_bytes()[: len(PNG_SIGNATURE)] == PNG_SIGNATURE
    height, width = imread(png).shape[:2]
    assert (width, height) == (PLOT_SIZE_INCHES[0] * PLOT_DPI, PLOT_SIZE_INCHES[1] * PLOT_DPI)
    assert not (out / "ablation_ghm_bins.png").exists()  # no GHM run in this study

    with (out / "ablation_curves.csv").open() as handle:
        curves = [(r["config"], int(r["epoch"]), int(r["seeds"]), float(r["AP_mean"]), r["AP_std"])
                  for r in csv.DictReader(handle)]
    spread = math.sqrt(((0.1 - 0.15) ** 2 + (0.2 - 0.15) ** 2) / 1)  # sample std of two seeds, both epochs
    assert [row[:3] for row in curves] == [("pr_focal", 1, 2), ("pr_focal", 2, 2), ("bce", 2, 1)]
    assert [row[3] for row in curves] == [pytest.approx(0.15), pytest.approx(0.35), 0.2]  # bce: epoch 1 AP undefined
    assert [float(row[4]) for row in curves[:2]] == [pytest.approx(spread), pytest.approx(spread)]
    assert curves[2][4] == ""  # one seed: no std


def test_empty_study(tmp_path: Path) -> None:
    assert summarize([]) == []
    assert len(markdown_table([]).splitlines()) == 2  # header and rule only
    write_reports([], tmp_path)
    assert (tmp_path / "ablation.png").read_bytes().startswith(PNG_SIGNATURE)
    with (tmp_path / "ablation.csv").open() as handle:
        assert len(list(csv.reader(handle))) == 1


def test_collect_run_errors_and_tolerated_damage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = RunSpec("x", "bce", 0, tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="nothing"):
        collect_run(missing)
    bad = make_run(tmp_path, "bad", 0, metrics={"AP": "high"})
    with pytest.raises(ValueError, match=r"metrics\.json: AP: expected a number"):
        collect_run(bad)

    spec = make_run(tmp_path, "cut", 0, metrics=metrics(0.1), records=[train(1, 3.0)])
    with (spec.run_dir / "metrics.jsonl").open("a") as handle:
        handle.write('{"type": "train", "epoch": 2, "lo\n')  # a line cut short by a killed run
    caplog.set_level(logging.WARNING, logger="centernet.ablation.runs")
    monkeypatch.setattr(logging.getLogger("centernet"), "propagate", True)  # setup_logging() turns it off
    assert collect_run(spec).final_loss == 3.0
    assert "metrics.jsonl:2 is not a JSON object" in caplog.text
    no_log = make_run(tmp_path, "nolog", 0, metrics=metrics(0.1))
    result = collect_run(no_log)
    assert result.final_loss is None and result.val_curve == {}


def test_run_status(tmp_path: Path) -> None:
    spec = RunSpec("run", "focal", 0, tmp_path / "run")
    assert run_status(spec, epochs=2) == run_status(RunSpec("absent", "focal", 0, tmp_path / "absent"), epochs=2)
    assert run_status(spec, epochs=2).completed_epochs == 0 and not run_status(spec, epochs=2).done
    config = {"solver": {"epochs": 2}}
    last = spec.run_dir / "checkpoints" / "last.pth"
    save_checkpoint({"epoch": 1, "config": config}, last)
    status = run_status(spec, epochs=2)
    assert (status.completed_epochs, status.planned_epochs, status.done, status.config) == (1, 2, False, config)
    save_checkpoint({"epoch": 2, "config": config}, last)
    assert not run_status(spec, epochs=2).done  # trained but no final evaluation
    (spec.run_dir / "eval").mkdir()
    (spec.run_dir / "eval" / "metrics.json").write_text("{}")
    assert run_status(spec, epochs=2).done
    with pytest.raises(ValueError, match=r"2 completed epochs but plans 1"):
        run_status(spec, epochs=1)
    save_checkpoint({"epoch": "two"}, last)
    with pytest.raises(ValueError, match="expected an integer 'epoch'"):
        run_status(spec, epochs=2)


def test_run_status_follows_the_stretched_plan_and_named_sets(tmp_path: Path) -> None:
    """solver.min_iters stretched solver.epochs 2 to a 5-epoch plan (the checkpoint's max_epochs): epoch 2
    is not the end; the final metrics of a named set live in eval/<set>/metrics.json."""
    spec = RunSpec("run", "focal", 0, tmp_path / "run", val_set="yell")
    last = spec.run_dir / "checkpoints" / "last.pth"
    (spec.run_dir / "eval" / "yell").mkdir(parents=True)
    (spec.run_dir / "eval" / "yell" / "metrics.json").write_text("{}")
    save_checkpoint({"epoch": 2, "max_epochs": 5}, last)
    status = run_status(spec, epochs=2)
    assert (status.completed_epochs, status.planned_epochs, status.done) == (2, 5, False)
    save_checkpoint({"epoch": 5, "max_epochs": 5}, last)
    assert run_status(spec, epochs=2).done
    other = RunSpec("run", "focal", 0, spec.run_dir, val_set="cross_site")
    assert not run_status(other, epochs=2).done  # that set's metrics were never written
    save_checkpoint({"epoch": 5, "max_epochs": "five"}, last)
    with pytest.raises(ValueError, match="expected an integer 'max_epochs'"):
        run_status(spec, epochs=2)


def test_record_run_time_accumulates_over_resumed_sessions(tmp_path: Path) -> None:
    first = record_run_time(tmp_path, 5.0, finished=False, resumed=False)
    assert first == {"train_time_s": 5.0, "sessions": 1, "finished": False}
    second = record_run_time(tmp_path, 2.5, finished=True, resumed=True)
    assert second == {"train_time_s": 7.5, "sessions": 2, "finished": True}
    assert json.loads((tmp_path / "run_info.json").read_text()) == second
    fresh = record_run_time(tmp_path, 1.0, finished=True, resumed=False)  # restarted from scratch
    assert fresh == {"train_time_s": 1.0, "sessions": 1, "finished": True}


def test_exported_record_is_a_finished_run_without_checkpoints(tmp_path: Path) -> None:
    """export_record copies what the report reads, nothing else; the copy counts as done and reports the same."""
    spec = RunSpec("run", "focal", 3, tmp_path / "study" / "run" / "seed3", val_set="yell")
    run_dir = spec.run_dir
    records = [train(1, 2.0), val(1, 0.1), train(2, 1.5), {**val(2, 0.3), "set": "yell"}]
    files = {
        "config.yaml": "solver:\n  epochs: 2\n  lr: 0.01\n",
        "run_info.json": json.dumps({"train_time_s": 12.5, "sessions": 2, "finished": True}),
        "metrics.jsonl": "".join(json.dumps(r) + "\n" for r in records),
        "eval/yell/metrics.json": json.dumps(metrics(0.3)),
        "eval/cross_site/metrics.json": json.dumps(metrics(0.1)),
        "eval/yell/predictions.png": "not a record",
        "run.log": "a log",
    }
    for name, text in files.items():
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_text(text)
    last = run_dir / "checkpoints" / "last.pth"
    save_checkpoint({"epoch": 2, "max_epochs": 2, "config": {"solver": {"epochs": 2}}}, last)
    expected = ["config.yaml", "run_info.json", "metrics.jsonl",
                "eval/cross_site/metrics.json", "eval/yell/metrics.json"]
    assert [str(path) for path in record_files(run_dir)] == expected

    kept = tmp_path / "kept"
    assert export_record(spec, kept) == 5
    copy = RunSpec("run", "focal", 3, kept / "run" / "seed3", val_set="yell")
    assert sorted(str(p.relative_to(copy.run_dir)) for p in copy.run_dir.rglob("*") if p.is_file()) == sorted(expected)
    assert all((copy.run_dir / name).read_bytes() == (run_dir / name).read_bytes() for name in expected)
    status = run_status(copy, epochs=99)  # epochs: the last train record's, not the config's
    assert (status.done, status.completed_epochs, status.planned_epochs) == (True, 2, 2)
    assert status.config == {"solver": {"epochs": 2, "lr": 0.01}}
    assert status.config_source == copy.run_dir / "config.yaml"
    original, kept_result = collect_run(spec), collect_run(copy)
    assert (kept_result.metrics, kept_result.val_curve, kept_result.train_time_s) == (
        original.metrics, original.val_curve, 12.5)

    assert export_record(spec, kept) == 0  # the same record again: nothing to copy
    (copy.run_dir / "metrics.jsonl").write_text("edited\n")
    with pytest.raises(FileExistsError, match=r"kept/run/seed3/metrics.jsonl already exists with other content"):
        export_record(spec, kept)
    assert (copy.run_dir / "metrics.jsonl").read_text() == "edited\n"  # nothing replaced

    (copy.run_dir / "config.yaml").write_text("- a list, not config sections\n")
    with pytest.raises(ConfigError, match=r"seed3/config.yaml: the top level must be a mapping, got list"):
        run_status(copy, epochs=2)

    # not a kept record: a run that did not finish, or one without its final metrics
    (copy.run_dir / "run_info.json").write_text(json.dumps({"train_time_s": 1.0, "sessions": 1, "finished": False}))
    assert not run_status(copy, epochs=2).done and run_status(copy, epochs=2).completed_epochs == 0
    (copy.run_dir / "run_info.json").write_text(json.dumps({"finished": True}))
    (copy.run_dir / "eval" / "yell" / "metrics.json").unlink()
    assert not run_status(copy, epochs=2).done


def test_config_differences() -> None:
    saved = {"solver": {"lr": 0.1, "epochs": 2}, "runtime": {"threads": 1}, "loss": {"heatmap": {"type": "bce"}}}
    assert config_differences(saved, saved) == []
    current = {"solver": {"lr": 0.2, "epochs": 2}, "runtime": {"threads": 4}, "loss": {"heatmap": {"type": "bce"}}}
    assert config_differences(saved, current) == ["runtime.threads", "solver.lr"]
    assert config_differences(saved, current, ignore=["runtime.threads"]) == ["solver.lr"]
    extra = {**saved, "eval": {"flip": True}}
    assert config_differences(saved, extra) == ["eval"]
