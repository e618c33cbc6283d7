"""The benchmark suite runs in its quick mode and writes well-formed results (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import load_script


def test_quick_benchmarks_write_results(tmp_path: Path, capsys) -> None:
    bench = load_script("benchmarks/run.py")
    out = tmp_path / "results.json"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["quick"] is True and payload["rows"]
    for row in payload["rows"]:
        assert row["ours_ms"] > 0 and row["reference_ms"] > 0
        assert abs(row["ratio"] - row["ours_ms"] / row["reference_ms"]) < 1e-9
    assert "| row |" in capsys.readouterr().out
