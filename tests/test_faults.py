"""The fault-injection suite (benchmarks/faults.py) in its small version: one fault of each kind on real training
processes, each survived with no result lost and the final weights of the uninterrupted run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import load_script

faults = load_script("benchmarks/faults.py")


def can_mount_tmpfs(folder: Path) -> bool:
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True,
                          check=False)
    if done.returncode == 0:
        subprocess.run(["umount", str(folder)], check=False)
    return done.returncode == 0


def test_one_fault_of_each_kind_is_survived(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kinds = ["sigterm", "sigkill", "half_write", "corrupt_newest"]
    if can_mount_tmpfs(tmp_path / "probe"):  # the disk-full fault needs a tmpfs (root)
        kinds.append("disk_full")
    assert faults.main(["--faults", "1", "--kinds", ",".join(kinds), "--seed", "3", "--work-dir", str(tmp_path)]) == 0
    (report,) = tmp_path.glob("faults_*.json")
    summary = json.loads(report.read_text())["summary"]
    assert list(summary) == kinds
    for kind, row in summary.items():
        assert row["survived"] == row["faults"] == 1, kind
        assert row["results_lost"] == 0 and row["max_weight_diff"] == 0.0, kind
    assert summary["sigterm"]["steps_redone_max"] == 0  # a stop signal costs no step
    assert "| sigkill | 1 / 1 |" in capsys.readouterr().out
    assert not list((tmp_path / "trials").glob("*/checkpoints"))  # trial folders removed


def test_fault_points_are_seeded_and_in_range() -> None:
    import random

    first = faults.fault_points("sigkill", 20, random.Random(0))
    assert first == faults.fault_points("sigkill", 20, random.Random(0))
    assert all(1 <= p <= faults.STEPS for p in first) and len(set(first)) > 5
    assert all(1 <= p <= 8 for p in faults.fault_points("half_write", 20, random.Random(1)))
