"""tools/plot_logs.py: curves of one or more runs from metrics.jsonl files written by the test."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from tests.conftest import load_script

plot_logs = load_script("tools/plot_logs.py")


def write_run(folder: Path, losses: list[float], aps: list[float]) -> Path:
    folder.mkdir(parents=True)
    lines = [{"type": "train", "epoch": 1, "iter": 10 * i, "loss": loss, "heatmap": loss / 2, "lr": 1e-3}
             for i, loss in enumerate(losses)]
    lines += [{"type": "val", "epoch": i + 1, "iter": 20 * (i + 1), "AP": ap, "AP50": ap + 0.1}
              for i, ap in enumerate(aps)]
    lines.append({"type": "train", "epoch": 1, "iter": 99, "loss": float("nan")})  # non-finite: skipped
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return folder


def test_read_curves(tmp_path: Path) -> None:
    run = write_run(tmp_path / "a", [3.0, 2.0, 1.5], [0.1, 0.3])
    train, val = plot_logs.read_curves(run)
    assert train["loss"] == [(0, 3.0), (10, 2.0), (20, 1.5)]
    assert train["heatmap"] == [(0, 1.5), (10, 1.0), (20, 0.75)]
    assert val["AP"] == [(20, 0.1), (40, 0.3)] and "epoch" not in val


def test_two_runs_default_and_chosen_keys(tmp_path: Path) -> None:
    runs = [write_run(tmp_path / "a", [3.0, 2.0, 1.5], [0.1, 0.3]), write_run(tmp_path / "b", [2.5, 1.0], [0.2])]
    out = tmp_path / "curves.png"
    assert plot_logs.main([*map(str, runs), "--output", str(out)]) == 0
    wide = cv2.imread(str(out))
    assert wide is not None
    assert plot_logs.main([*map(str, runs), "--output", str(tmp_path / "ap.png"), "--keys", "AP"]) == 0
    single = cv2.imread(str(tmp_path / "ap.png"))
    # defaults: train loss, heatmap, val AP, AP50 in a 3-column grid; --keys AP: one panel
    assert single.shape[1] < wide.shape[1] and single.shape[0] < wide.shape[0]
    panels = plot_logs.choose_keys({"a": plot_logs.read_curves(runs[0])}, None)
    assert panels == [("train", "loss"), ("train", "heatmap"), ("val", "AP"), ("val", "AP50")]


def test_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path / "a", [1.0], [0.5])
    assert plot_logs.main([str(run), "--output", str(tmp_path / "x.png"), "--keys", "APx"]) == 1
    assert "--keys APx: no run logs it; available keys: AP, AP50, heatmap, loss, lr" in capsys.readouterr().err
    assert plot_logs.main([str(tmp_path / "missing"), "--output", str(tmp_path / "x.png")]) == 1
    assert "missing does not exist (expected a run folder holding metrics.jsonl)" in capsys.readouterr().err
    (run / "metrics.jsonl").write_text('{"type": "train", "iter": 1}\nnot json\n')
    assert plot_logs.main([str(run), "--output", str(tmp_path / "x.png")]) == 1
    assert "metrics.jsonl line 2: not a metrics record" in capsys.readouterr().err


def test_named_sets_and_the_epoch_axis(tmp_path: Path) -> None:
    """Val records of named sets become `<set>/<metric>` curves; --x epoch divides by the epoch length
    (8 iterations here: the last record of epoch 1 is at iteration 8)."""
    folder = tmp_path / "trees"
    folder.mkdir()
    lines = [{"type": "train", "epoch": 1, "iter": 4, "loss": 3.0, "box": 1.0},
             {"type": "train", "epoch": 1, "iter": 8, "loss": 2.0, "box": 0.5},
             {"type": "val", "epoch": 1, "iter": 8, "set": "yell", "AP": 0.1, "AP50": 0.3},
             {"type": "val", "epoch": 1, "iter": 8, "set": "cross_site", "AP": 0.05, "AP50": 0.2},
             {"type": "train", "epoch": 2, "iter": 12, "loss": 1.5, "box": 0.4},
             {"type": "val", "epoch": 2, "iter": 16, "set": "yell", "AP": 0.2, "AP50": 0.5}]
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    train, val = plot_logs.read_curves(folder, "epoch")
    assert train["loss"] == [(0.5, 3.0), (1.0, 2.0), (1.5, 1.5)] and train["box"][-1] == (1.5, 0.4)
    assert val["yell/AP"] == [(1.0, 0.1), (2.0, 0.2)] and val["cross_site/AP50"] == [(1.0, 0.2)]
    assert "AP" not in val and "set" not in val
    assert plot_logs.choose_keys({"trees": (train, val)}, None) == [
        ("train", "loss"), ("train", "box"), ("val", "cross_site/AP"), ("val", "cross_site/AP50"),
        ("val", "yell/AP"), ("val", "yell/AP50")]
    out = tmp_path / "epochs.png"
    assert plot_logs.main([str(folder), "--output", str(out), "--x", "epoch", "--keys", "yell/AP"]) == 0
    assert cv2.imread(str(out)) is not None
    (folder / "metrics.jsonl").write_text(json.dumps({"type": "train", "epoch": 2, "iter": 3, "loss": 1.0}) + "\n")
    with pytest.raises(ValueError, match="--x epoch needs the records of epoch 1"):
        plot_logs.read_curves(folder, "epoch")
