"""The device check runs its code paths on the CPU (--device cpu --quick) and reports what it skipped and why."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu.py"
QUICK_TIMEOUT_S = 600  # the quick run takes about a minute; generous for loaded machines


def _run(*args: str, timeout: float = QUICK_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    stem = tmp_path_factory.mktemp("gpu_check") / "report"
    return _run("--device", "cpu", "--quick", "--output", str(stem)), stem


def test_quick_cpu_run_passes_and_writes_both_reports(quick_report) -> None:
    done, stem = quick_report
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    payload = json.loads(stem.with_suffix(".json").read_text())
    assert payload["quick"] is True and payload["failed"] == 0
    assert payload["environment"]["device"] == "cpu"
    assert set(payload["seconds"]) == {
        "training", "device equals CPU", "torchrun and resume", "focal loss speed", "training speed",
        "inference speed",
    }
    statuses = {check["status"] for check in payload["checks"]}
    assert statuses <= {"pass", "skipped"}
    assert all(check["reason"] for check in payload["checks"] if check["status"] == "skipped")
    markdown = stem.with_suffix(".md").read_text()
    assert markdown.startswith("# Device check (--quick)") and "## training" in markdown
    assert "paper" in markdown


def test_quick_training_losses_finite_and_decreasing(quick_report) -> None:
    _, stem = quick_report
    checks = json.loads(stem.with_suffix(".json").read_text())["checks"]
    training = {check["name"]: check for check in checks if check["section"] == "training"}
    for model in ("ResNet-18", "ResDCN-18"):
        for layout in ("off", "on"):
            check = training[f"{model}, fp32, channels_last={layout}"]
            assert check["status"] == "pass"
            first, last = check["figures"]["first_losses"], check["figures"]["last_losses"]
            assert all(math.isfinite(v) for v in first + last) and sum(last) < sum(first)
            fp16 = training[f"{model}, fp16, channels_last={layout}"]
            assert fp16["status"] == "skipped" and "CUDA" in fp16["reason"]


def test_quick_equality_runs_and_speed_figures(quick_report) -> None:
    _, stem = quick_report
    checks = json.loads(stem.with_suffix(".json").read_text())["checks"]
    by_section: dict[str, list[dict]] = {}
    for check in checks:
        by_section.setdefault(check["section"], []).append(check)
    equal = {check["name"]: check for check in by_section["device equals CPU"]}
    for name in ("render_targets[heatmap]", "bce gradient", "decode_detections boxes"):  # CPU against itself
        assert equal[name]["status"] == "pass" and equal[name]["figures"]["max_abs_error"] == 0.0
    fused = equal["penalty_reduced_focal (eager) gradient"]  # the fused loss against the plain formula
    assert fused["status"] == "pass" and fused["figures"]["max_abs_error"] <= fused["figures"]["tolerance"]
    torchrun = by_section["torchrun"][0]
    assert torchrun["status"] == "pass" and torchrun["figures"]["saved_epoch"] == 1
    resume = {check["name"]: check for check in by_section["checkpoint across devices"]}
    assert resume["device -> CPU"]["status"] == "pass" and resume["device -> CPU"]["figures"]["saved_epoch"] == 2
    assert resume["CPU -> device"]["status"] == "skipped"
    timed = [c for c in by_section["inference speed"] if c["status"] == "pass"]
    assert {c["name"] for c in timed} >= {"ResNet-18, 64px, B=1, fp32", "ResNet-18, 64px, B=2, fp32"}
    assert all(c["figures"]["images_per_s"] > 0 for c in timed)
    (train,) = by_section["training speed"]
    assert train["figures"]["images_per_s_real_loader"] > 0 and train["figures"]["images_per_s_from_memory"] > 0


def test_existing_report_is_not_overwritten(quick_report) -> None:
    _, stem = quick_report
    before = stem.with_suffix(".json").read_text()
    done = _run("--device", "cpu", "--quick", "--output", str(stem), timeout=120)
    assert done.returncode == 1 and "already exists" in done.stderr
    assert stem.with_suffix(".json").read_text() == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_without_cuda_it_stops_with_one_line(tmp_path: Path) -> None:
    done = _run("--output", str(tmp_path / "report"), timeout=120)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0]
    assert not list(tmp_path.iterdir())
