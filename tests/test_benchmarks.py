"""The benchmark suite runs in its quick mode and writes well-formed results (no timing assertions)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import load_script


def test_make_row_ratio_and_target():
    from benchmarks.common import make_row

    faster = make_row("r", "a", "b", "ms", 30.0, 100.0, "<= 0.5")
    assert faster.ratio == pytest.approx(0.3) and faster.met is True
    slower = make_row("r", "a", "b", "samples/s", 200.0, 100.0, ">= 3")
    assert slower.ratio == pytest.approx(2.0) and slower.met is False
    assert make_row("r", "a", "b", "MiB", 1.0, 4.0, "report").met is None


def test_reference_targets_match_render_targets():
    """The per-object baseline of the targets row draws exactly what render_targets draws."""
    import numpy as np
    import torch

    from benchmarks.reference.targets import batch_targets
    from benchmarks.rows.targets import random_grid_boxes
    from centernet.targets import render_targets

    boxes, labels, valid = random_grid_boxes(np.random.default_rng(3), 3, 5, 24, 4)
    ours = render_targets(boxes, labels, valid, num_classes=4, output_size=(24, 24))
    ref = batch_targets(boxes.numpy(), labels.numpy(), valid.numpy(), 4, 24)
    np.testing.assert_allclose(ours["heatmap"].numpy(), ref["hm"], rtol=0, atol=1e-7)
    np.testing.assert_allclose(ours["size"].numpy(), ref["wh"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(ours["index"].numpy(), ref["ind"])
    np.testing.assert_array_equal(ours["mask"].numpy(), ref["reg_mask"].astype(np.float32))
    assert torch.count_nonzero(ours["heatmap"] == 1) == int(ours["mask"].sum())


def test_quick_benchmarks_write_results(tmp_path: Path, capsys) -> None:
    bench = load_script("benchmarks/run.py")
    out = tmp_path / "results.json"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["quick"] is True
    assert {"cpu", "threads", "torch"} <= set(payload["machine"])
    rows = payload["rows"]
    assert set(payload["seconds"]) == set(bench.ROWS)
    names = [row["name"] for row in rows]
    assert len(names) == len(set(names)) >= len(bench.ROWS)
    for row in rows:
        for key in ("ours_value", "reference_value", "ratio"):
            assert math.isfinite(row[key]) and row[key] > 0, (row["name"], key)
        assert abs(row["ratio"] - row["ours_value"] / row["reference_value"]) < 1e-9
        assert row["met"] in (True, False, None) and row["unit"]
    evaluation = next(row for row in rows if row["name"].startswith("COCO eval"))
    assert evaluation["details"]["same_12_stats"] is True
    memory = next(row for row in rows if row["name"].startswith("memory"))
    assert len(memory["details"]["worker_peaks_mib"]) == 2
    table = capsys.readouterr().out
    assert "| row |" in table and table.count("\n") == len(rows) + 2


def test_unknown_row_is_rejected(tmp_path: Path) -> None:
    bench = load_script("benchmarks/run.py")
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--rows", "loader,nope", "--out", str(tmp_path / "r.json")])


def test_results_go_to_a_new_file_unless_the_tracked_one_is_asked_for(capsys) -> None:
    bench = load_script("benchmarks/run.py")
    first = bench.output_path(None, quick=True, update_tracked=False)
    assert first.parent == bench.RESULTS_DIR and first.name.startswith("results_quick_")
    assert bench.output_path(None, quick=False, update_tracked=True) == bench.TRACKED_RESULTS
    assert bench.output_path(Path("mine.json"), quick=True, update_tracked=False) == Path("mine.json")
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--update-tracked"])
    assert "--update-tracked would replace" in capsys.readouterr().err
