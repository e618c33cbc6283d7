"""tools/benchmark.py: per-stage timings, throughput and memory of a tiny model, written as JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import load_script

benchmark_tool = load_script("tools/benchmark.py")

STAGES = ("pre-process", "network", "decode", "post-process")


@pytest.mark.parametrize("extra", [[], ["--channels-last", "--amp", "bf16"]])
def test_two_runs_on_a_tiny_model(tiny_config: Callable[..., Path], tmp_path: Path, extra: list[str]) -> None:
    out = tmp_path / "bench.json"
    code = benchmark_tool.main(["--config", str(tiny_config()), "--runs", "2", "--warmup", "1", "--batch-size", "3",
                                "--device", "cpu", "--threads", "1", "--output", str(out), *extra])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["batch_size"] == 3 and result["runs"] == 2 and result["input_size"] == [64, 64]
    assert result["channels_last"] == ("--channels-last" in extra)
    for stage in (*STAGES, "total"):
        assert 0 < result[stage]["median_ms"] <= result[stage]["p90_ms"]
    # the total of each run is the sum of its stages; its median lies within the stage medians' span
    assert result["total"]["median_ms"] >= max(result[s]["median_ms"] for s in STAGES)
    assert result["images_per_s"] == pytest.approx(3 / (result["total"]["median_ms"] / 1000))
    assert result["peak_memory_mib"] > 10 and result["peak_memory_kind"] == "process peak RSS"


def test_an_ltrb_model(tiny_config: Callable[..., Path], tmp_path: Path) -> None:
    config = tmp_path / "ttf.yaml"
    config.write_text(f"_base_: {tiny_config()}\nmodel: {{head: {{box: ltrb}}}}\ntarget: {{box: gaussian_area}}\n"
                      "loss: {box: {type: giou}}\n")
    out = tmp_path / "bench.json"
    assert benchmark_tool.main(["--config", str(config), "--runs", "1", "--warmup", "0", "--device", "cpu",
                                "--threads", "1", "--output", str(out)]) == 0
    assert json.loads(out.read_text())["decode"]["median_ms"] > 0


def test_bad_arguments_are_one_line_errors(tiny_config: Callable[..., Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert benchmark_tool.main(["--config", str(tiny_config()), "--runs", "0"]) == 1
    assert "--runs and --batch-size must be >= 1" in capsys.readouterr().err
    assert benchmark_tool.main(["--config", str(tiny_config()), "--runs", "1", "--images", "/nonexistent.jpg"]) == 1
    assert "--images /nonexistent.jpg does not exist" in capsys.readouterr().err


def test_images_need_no_annotation_file_and_overrides_apply(
    tiny_config: Callable[..., Path], tiny_shapes: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    absent = ["data.val.ann_file=/nonexistent/val.json", "data.train.ann_file=/nonexistent/train.json"]
    code = benchmark_tool.main(["--config", str(tiny_config()), "--runs", "1", "--warmup", "0", "--threads", "1",
                                "--images", str(tiny_shapes / "val"), *absent, "data.input_size=[32,32]",
                                "--output", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["input_size"] == [32, 32] and result["overrides"][-1] == "data.input_size=[32,32]"
