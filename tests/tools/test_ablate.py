"""tools/ablate.py: config x seed runs, skip and resume on rerun, reports, bad input; the ablation configs."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from centernet.ablation import config_differences
from centernet.config import config_to_dict, load_config
from centernet.engine.checkpoint import load_checkpoint
from centernet.engine.hooks import EvalHook
from tests.conftest import REPO, load_script

ablate = load_script("tools/ablate.py")

ABLATION_DIR = REPO / "configs" / "ablations"
BCE_LOSS = "loss:\n  heatmap: {type: bce}\n"


def error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]


STUDY_LOSSES = {
    "bce": ("bce", None),
    "focal": ("focal", None),
    "penalty_reduced_focal": ("penalty_reduced_focal", None),
    "ghm_c_batch": ("ghm_c", (10, 0.0, "batch")),
    "ghm_c": ("ghm_c", (10, 0.75, "ema")),
    "ghm_c_ema30": ("ghm_c", (30, 0.75, "ema")),
    "ghm_c_epoch": ("ghm_c", (10, 0.0, "epoch")),
    "ghm_c_batch_then_epoch": ("ghm_c", (10, 0.0, "batch_then_epoch")),
    "ghm_centernet": ("ghm_centernet", (10, 0.75, "ema")),
    "ghm_centernet_batch_then_epoch": ("ghm_centernet", (10, 0.0, "batch_then_epoch")),
}


@pytest.mark.parametrize(("folder", "prefix", "base"), [
    (ABLATION_DIR, "shapes", "shapes_resnet18.yaml"),
    (ABLATION_DIR / "trees", "trees", "trees_efficientnet_lite0.yaml"),
])  # fmt: skip
def test_ablation_configs_differ_from_the_base_only_in_the_heatmap_loss(folder: Path, prefix: str, base: str) -> None:
    base_dict = config_to_dict(load_config(REPO / "configs" / base))
    found = {}
    for path in sorted(folder.glob("*.yaml")):
        cfg = load_config(path)
        assert path.read_text().startswith("# "), f"{path.name} needs a header comment"
        changed = config_differences(base_dict, config_to_dict(cfg))
        assert all(key.startswith("loss.heatmap.") for key in changed), (path.name, changed)
        heatmap = cfg.loss.heatmap
        density = (heatmap.bins, heatmap.momentum, heatmap.density) if hasattr(heatmap, "density") else None
        found[path.stem] = (heatmap.type, density)
    assert found == {f"{prefix}_{name}": value for name, value in STUDY_LOSSES.items()}


def test_overrides_after_the_seeds_are_overrides() -> None:
    args = ablate.parse_args(
        ["--configs", "a.yaml", "b.yaml", "--seeds", "0", "1", "solver.epochs=1", "eval.flip=true"]
    )
    assert args.configs == ["a.yaml", "b.yaml"] and args.seeds == [0, 1]
    assert args.overrides == ["solver.epochs=1", "eval.flip=true"]
    with pytest.raises(SystemExit):
        ablate.parse_args(["--configs", "a.yaml", "--seeds", "zero"])


def test_two_configs_train_then_skip_on_rerun(
    tiny_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configs = [str(tiny_config(name="prfocal.yaml")), str(tiny_config(BCE_LOSS, name="bce.yaml"))]
    work = tmp_path / "study"
    argv = ["--configs", *configs, "--seeds", "0", "--work-dir", str(work), "--no-progress", "solver.epochs=1"]
    assert ablate.main(argv) == 0

    runs = {name: work / name / "seed0" for name in ("prfocal", "bce")}
    for name, run_dir in runs.items():
        state = load_checkpoint(run_dir / "checkpoints" / "last.pth")
        assert state["epoch"] == 1 and state["config"]["runtime"]["seed"] == 0, name
        info = json.loads((run_dir / "run_info.json").read_text())
        assert info["finished"] and info["sessions"] == 1 and info["train_time_s"] > 0
        assert (run_dir / "run.log").is_file()
    with (work / "ablation.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["config"], r["heatmap_loss"], r["seed"]) for r in rows] == [
        ("prfocal", "penalty_reduced_focal", "0"),
        ("bce", "bce", "0"),
    ]
    for row in rows:
        final = json.loads((runs[row["config"]] / "eval" / "metrics.json").read_text())
        assert float(row["AP"]) == pytest.approx(final["AP"])
        records = (runs[row["config"]] / "metrics.jsonl").read_text().splitlines()
        last_train = [json.loads(line) for line in records if '"train"' in line][-1]
        assert float(row["final_loss"]) == pytest.approx(last_train["loss"])
    table = (work / "ablation.md").read_text()
    assert "| prfocal | penalty_reduced_focal | 1 |" in table and "| bce | bce | 1 |" in table
    assert (work / "ablation.png").read_bytes().startswith(b"\x89PNG")
    first_err = capsys.readouterr().err
    assert "| bce | bce | 1 |" in first_err  # the table is logged

    stamps = {name: (run_dir / "run_info.json").stat().st_mtime_ns for name, run_dir in runs.items()}
    assert ablate.main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("is done (1 epochs): skipped") == 2
    assert {name: (run_dir / "run_info.json").stat().st_mtime_ns for name, run_dir in runs.items()} == stamps
    with (work / "ablation.csv").open() as handle:
        assert list(csv.DictReader(handle)) == rows  # same numbers, train time from run_info.json

    # a changed config must not silently resume or skip the runs of another one
    assert ablate.main([*argv, "solver.lr=0.5"]) == 1
    errors = error_lines(capsys)
    assert len(errors) == 1 and "solver.lr" in errors[0] and "prfocal" in errors[0]

    # the records without checkpoints, elsewhere: a study folder of finished runs that reports the same
    kept = tmp_path / "kept"
    assert ablate.main([*argv, "--report-only", "--export-records", str(kept)]) == 0
    assert "records of 2 finished runs in" in capsys.readouterr().err
    assert not list(kept.rglob("*.pth")) and (kept / "bce" / "seed0" / "metrics.jsonl").is_file()
    kept_argv = ["--configs", *configs, "--seeds", "0", "--work-dir", str(kept), "--no-progress", "solver.epochs=1"]
    assert ablate.main(kept_argv) == 0  # trains nothing
    assert capsys.readouterr().err.count("is done (1 epochs): skipped") == 2
    assert read_rows(kept) == rows
    assert ablate.main([*kept_argv, "solver.lr=0.5"]) == 1
    errors = error_lines(capsys)
    kept_config = kept / "prfocal" / "seed0" / "config.yaml"
    assert len(errors) == 1 and f"{kept_config} was trained with a different config" in errors[0]


def test_runs_train_seed_by_seed_and_report_in_plan_order(
    tiny_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configs = [str(tiny_config(name="prfocal.yaml")), str(tiny_config(BCE_LOSS, name="bce.yaml"))]
    work = tmp_path / "study"
    argv = ["--configs", *configs, "--seeds", "3", "1", "--work-dir", str(work), "--no-progress", "solver.epochs=1"]
    assert ablate.main(argv) == 0
    started = [re.search(r"(\w+ seed \d) \(", line).group(1)  # type: ignore[union-attr]
               for line in capsys.readouterr().err.splitlines() if ": training 1 epochs in " in line]
    assert started == ["prfocal seed 3", "bce seed 3", "prfocal seed 1", "bce seed 1"]
    assert [(r["config"], r["seed"]) for r in read_rows(work)] == [
        ("prfocal", "3"), ("prfocal", "1"), ("bce", "3"), ("bce", "1")]


def test_interrupted_run_resumes_and_sums_its_time(
    tiny_config: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = str(tiny_config(name="only.yaml"))  # 2 epochs, evaluated after each
    work = tmp_path / "study"
    argv = ["--configs", config, "--seeds", "3", "--work-dir", str(work), "--no-progress"]
    evaluate = EvalHook.run  # what the trainer calls after each epoch

    def fail_at_epoch_2(hook: EvalHook) -> dict:
        if hook.trainer.epoch == 2:
            raise FloatingPointError("simulated divergence at epoch 2")
        return evaluate(hook)

    monkeypatch.setattr(EvalHook, "run", fail_at_epoch_2)
    assert ablate.main(argv) == 1
    errors = error_lines(capsys)
    assert any("only seed 3 failed: simulated divergence" in line for line in errors), errors
    run_dir = work / "only" / "seed3"
    assert load_checkpoint(run_dir / "checkpoints" / "last.pth")["epoch"] == 1
    first = json.loads((run_dir / "run_info.json").read_text())
    assert first["sessions"] == 1 and not first["finished"]
    assert not (work / "ablation.csv").exists()  # nothing finished: no report
    missing = tmp_path / "typo"
    assert ablate.main(["--configs", config, "--seeds", "3", "--work-dir", str(missing), "--report-only"]) == 1
    assert f"{missing} does not exist (no study to report)" in error_lines(capsys)[0] and not missing.exists()
    assert ablate.main([*argv, "--report-only"]) == 1  # trains nothing, says why there is no report
    errors = error_lines(capsys)
    assert len(errors) == 1 and f"no run in {work} has finished yet (1 planned)" in errors[0], errors
    assert load_checkpoint(run_dir / "checkpoints" / "last.pth")["epoch"] == 1
    assert not (work / "ablation.csv").exists()

    monkeypatch.setattr(EvalHook, "run", evaluate)
    assert ablate.main(argv) == 0
    assert "resuming after epoch 1/2" in capsys.readouterr().err
    second = json.loads((run_dir / "run_info.json").read_text())
    assert second["sessions"] == 2 and second["finished"] and second["train_time_s"] > first["train_time_s"]
    assert load_checkpoint(run_dir / "checkpoints" / "last.pth")["epoch"] == 2
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["type"] == "val"] == [1, 2]
    with (work / "ablation.csv").open() as handle:
        (row,) = list(csv.DictReader(handle))
    assert float(row["train_time_s"]) == pytest.approx(second["train_time_s"])

    # a report while seed 4 has not run: the finished run only, and the missing one named
    (work / "ablation.csv").unlink()
    assert ablate.main(["--configs", config, "--seeds", "3", "4", "--work-dir", str(work), "--report-only"]) == 0
    assert "1 of 2 runs are not finished and left out: only/seed4" in capsys.readouterr().err
    assert not (work / "only" / "seed4").exists()
    with (work / "ablation.csv").open() as handle:
        assert list(csv.DictReader(handle)) == [row]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["runtime.seed=5"], "runtime.seed is set by --seeds"),
        (["solver.learning_rate=1"], "'solver.learning_rate'"),
    ],
)
def test_bad_overrides(
    tiny_config: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    expected: str,
) -> None:
    argv = ["--configs", str(tiny_config()), "--seeds", "0", "--work-dir", str(tmp_path / "w"), *extra]
    assert ablate.main(argv) == 1
    errors = error_lines(capsys)
    assert len(errors) == 1 and expected in errors[0]


def test_duplicate_config_stems_and_seeds(
    tiny_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = tiny_config(name="same.yaml")
    other = tmp_path / "elsewhere" / "same.yaml"
    other.parent.mkdir()
    other.write_text(first.read_text())
    work = tmp_path / "w"
    assert ablate.main(["--configs", str(first), str(other), "--seeds", "0", "--work-dir", str(work)]) == 1
    (line,) = error_lines(capsys)
    assert "share the name 'same'" in line and str(first) in line and str(other) in line
    assert ablate.main(["--configs", str(first), "--seeds", "1", "1", "--work-dir", str(work)]) == 1
    (line,) = error_lines(capsys)
    assert "--seeds lists [1] more than once" in line
    assert not (work / "same").exists()  # nothing trained


def read_rows(work: Path) -> list[dict[str, str]]:
    with (work / "ablation.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_two_jobs_at_a_time_then_skip(
    tiny_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configs = [str(tiny_config(name="prfocal.yaml")), str(tiny_config(BCE_LOSS, name="bce.yaml"))]
    work = tmp_path / "study"
    argv = ["--configs", *configs, "--seeds", "0", "--work-dir", str(work), "--jobs", "2", "--baseline", "bce",
            "solver.epochs=1"]
    assert ablate.main(argv) == 0
    assert [(r["config"], r["seed"]) for r in read_rows(work)] == [("prfocal", "0"), ("bce", "0")]  # plan order
    threads = max(1, (os.cpu_count() or 1) // 2)  # the CPU split between the two workers
    for name in ("prfocal", "bce"):
        state = load_checkpoint(work / name / "seed0" / "checkpoints" / "last.pth")
        assert state["epoch"] == 1 and state["config"]["runtime"]["threads"] == threads
    assert "| prfocal | penalty_reduced_focal | 1 | " in (work / "ablation.md").read_text()
    assert "ΔAP vs bce (pp)" in (work / "ablation.md").read_text()
    capsys.readouterr()
    assert ablate.main(argv) == 0
    assert capsys.readouterr().err.count("is done (1 epochs): skipped") == 2


def test_submitit_local_executor_runs_and_resumes(
    tiny_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("submitit")
    config = str(tiny_config(name="tiny.yaml"))
    work = tmp_path / "study"
    argv = ["--configs", config, "--seeds", "0", "1", "--work-dir", str(work), "--launcher", "submitit",
            "--cluster", "local", "--gpus-per-node", "0", "--cpus-per-task", "1", "--timeout", "10",
            "solver.epochs=1", "runtime.device=cpu"]
    assert ablate.main(argv) == 0
    assert [(r["config"], r["seed"]) for r in read_rows(work)] == [("tiny", "0"), ("tiny", "1")]
    assert list((work / "submitit").glob("*_log.out"))  # the jobs' own logs
    # seed 1 stopped after training, before its final evaluation was written: the job only evaluates
    (work / "tiny" / "seed1" / "eval" / "metrics.json").unlink()
    capsys.readouterr()
    assert ablate.main(argv) == 0
    err = capsys.readouterr().err
    assert "tiny seed 0 is done (1 epochs): skipped" in err and err.count(": job ") == 1
    assert (work / "tiny" / "seed1" / "eval" / "metrics.json").is_file()
    info = json.loads((work / "tiny" / "seed1" / "run_info.json").read_text())
    assert info["sessions"] == 2 and info["finished"]


def test_launch_options_are_checked() -> None:
    with pytest.raises(SystemExit):
        ablate.parse_args(["--configs", "a.yaml", "--seeds", "0", "--jobs", "0"])
    with pytest.raises(SystemExit):
        ablate.parse_args(["--configs", "a.yaml", "--seeds", "0", "--baseline", "b"])
    with pytest.raises(SystemExit):
        ablate.parse_args(["--configs", "a.yaml", "--seeds", "0", "--launcher", "submitit", "--jobs", "2"])
    args = ablate.parse_args(["--configs", "x/a.yaml", "b.yaml", "--seeds", "0", "--baseline", "b"])
    assert args.baseline == "b" and args.jobs == 1 and args.launcher == "local"


def test_submitit_missing_is_one_error_line(
    tiny_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit -> ImportError
    argv = ["--configs", str(tiny_config()), "--seeds", "0", "--work-dir", str(tmp_path / "w"),
            "--launcher", "submitit"]
    assert ablate.main(argv) == 1
    (line,) = error_lines(capsys)
    assert "--launcher submitit needs the submitit package" in line


TARGET_KEYS = ("target.", "model.head.box", "model.head.ltrb_scale", "loss.box.")


@pytest.mark.parametrize(("prefix", "base"), [("shapes", "shapes_resnet18.yaml"),
                                              ("trees", "trees_efficientnet_lite0.yaml")])
def test_target_ablation_rows_differ_only_in_targets_head_and_box_loss(prefix: str, base: str) -> None:
    base_dict = config_to_dict(load_config(REPO / "configs" / base))
    rows = {}
    for path in sorted((ABLATION_DIR / "targets").glob(f"{prefix}_*.yaml")):
        cfg = load_config(path)
        changed = config_differences(base_dict, config_to_dict(cfg))
        assert changed and all(key.startswith(TARGET_KEYS) for key in changed), (path.name, changed)
        rows[path.stem] = (cfg.target.heatmap, cfg.target.box, cfg.model.head.box, cfg.loss.box.type)
    assert rows == {f"{prefix}_elliptical_heatmap": ("elliptical", "center", "size_offset", "l1"),
                    f"{prefix}_ttfnet_targets": ("elliptical", "gaussian_area", "ltrb", "giou")}


NAMED_SETS = """_base_: tiny.yaml
data:
  val:
    - {{name: held_out, type: coco, ann_file: {root}/annotations/instances_val.json, img_dir: {root}/val}}
    - {{name: seen, type: coco, ann_file: {root}/annotations/instances_train.json, img_dir: {root}/train}}
"""


def test_named_sets_and_a_stretched_plan_finish_skip_and_report_per_set(
    tiny_config: Callable[..., Path], tiny_shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """solver.min_iters stretches 1 epoch (3 iterations) to 2; the runs write eval/<set>/metrics.json only.
    A rerun must skip them (not retrain), and --val-set picks the reported set."""
    tiny_config()  # tiny.yaml: the tiny shapes (12 training images), 64 px
    config = tmp_path / "sets.yaml"
    config.write_text(NAMED_SETS.format(root=tiny_shapes))
    work = tmp_path / "study"
    argv = ["--configs", str(config), "--seeds", "0", "--work-dir", str(work), "--no-progress", "solver.epochs=1",
            "solver.min_iters=6"]
    assert ablate.main(argv) == 0
    assert "sets seed 0 (penalty_reduced_focal loss): training 1 epochs or at least 6 steps in " in (
        capsys.readouterr().err)  # the plan itself is known only once the loader is built
    run_dir = work / "sets" / "seed0"
    assert load_checkpoint(run_dir / "checkpoints" / "last.pth")["epoch"] == 2  # the stretched plan
    assert sorted(path.name for path in work.glob("ablation_*")) == ["ablation_curves_held_out.csv",
                                                                      "ablation_held_out.csv", "ablation_held_out.md",
                                                                      "ablation_held_out.png"]
    (row,) = read_rows_named(work, "held_out")
    assert float(row["AP"]) == pytest.approx(
        json.loads((run_dir / "eval" / "held_out" / "metrics.json").read_text())["AP"])
    capsys.readouterr()

    stamp = (run_dir / "run_info.json").stat().st_mtime_ns
    assert ablate.main([*argv, "--val-set", "seen"]) == 0
    assert "is done (2 epochs): skipped" in capsys.readouterr().err
    assert (run_dir / "run_info.json").stat().st_mtime_ns == stamp  # nothing trained again
    (row,) = read_rows_named(work, "seen")
    assert float(row["AP"]) == pytest.approx(json.loads((run_dir / "eval" / "seen" / "metrics.json").read_text())["AP"])

    assert ablate.main([*argv, "--val-set", "nope"]) == 1
    (line,) = error_lines(capsys)
    assert "--val-set nope" in line and "['held_out', 'seen']" in line


def read_rows_named(work: Path, name: str) -> list[dict[str, str]]:
    with (work / f"ablation_{name}.csv").open() as handle:
        return list(csv.DictReader(handle))


def wait_until_exist(launcher: subprocess.Popen[str] | subprocess.Popen[bytes], *paths: Path) -> None:
    """Block until every path exists (the runs started); fail if the launcher exits or 120 s pass first."""
    deadline = time.monotonic() + 120
    while not all(path.exists() for path in paths):
        assert launcher.poll() is None and time.monotonic() < deadline, "the runs did not start"
        time.sleep(0.5)


def test_sigterm_stops_the_pool_workers_with_the_launcher(tiny_config: Callable[..., Path], tmp_path: Path) -> None:
    """`kill` of a --jobs N study must not leave its workers training on into the run folders."""
    psutil = pytest.importorskip("psutil")
    work = tmp_path / "study"
    command = [sys.executable, str(REPO / "tools" / "ablate.py"), "--configs", str(tiny_config()), "--seeds", "0", "1",
               "--work-dir", str(work), "--jobs", "2", "--no-progress", "solver.epochs=1000", "eval.interval=0"]
    launcher = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[psutil.Process] = []
    try:
        wait_until_exist(launcher, *(work / "tiny" / f"seed{seed}" / "checkpoints" / "last.pth" for seed in (0, 1)))
        workers = psutil.Process(launcher.pid).children(recursive=True)
        assert workers
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=60) != 0
        _, alive = psutil.wait_procs(workers, timeout=30)
        assert alive == []
        for seed in (0, 1):  # each stopped run recorded its time before its worker ended
            info = json.loads((work / "tiny" / f"seed{seed}" / "run_info.json").read_text())
            assert info["sessions"] == 1 and not info["finished"] and info["train_time_s"] > 0, seed
    finally:  # whatever failed, leave no process behind
        for process in workers:
            if process.is_running():
                process.kill()
        if launcher.poll() is None:
            launcher.kill()


def test_sigterm_of_a_sequential_study_records_the_run_time(tiny_config: Callable[..., Path], tmp_path: Path) -> None:
    """Without --jobs the run trains in the launcher itself: `kill` must still leave its time in run_info.json."""
    work = tmp_path / "study"
    command = [sys.executable, str(REPO / "tools" / "ablate.py"), "--configs", str(tiny_config()), "--seeds", "0",
               "--work-dir", str(work), "--no-progress", "solver.epochs=1000", "eval.interval=0"]
    launcher = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_exist(launcher, work / "tiny" / "seed0" / "checkpoints" / "last.pth")
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=60) == 128 + signal.SIGTERM
        info = json.loads((work / "tiny" / "seed0" / "run_info.json").read_text())
        assert info["sessions"] == 1 and not info["finished"] and info["train_time_s"] > 0
    finally:
        if launcher.poll() is None:
            launcher.kill()


def test_sigterm_ends_an_idle_pool_worker_without_a_traceback(tiny_config: Callable[..., Path], tmp_path: Path) -> None:
    """A worker whose run finished waits for the next one; `kill` then ends it quietly (the busy one records)."""
    psutil = pytest.importorskip("psutil")
    long = tiny_config(name="long.yaml")
    long.write_text(long.read_text().replace("epochs: 2,", "epochs: 1000,"))
    short = tiny_config(name="short.yaml")
    work = tmp_path / "study"
    command = [sys.executable, str(REPO / "tools" / "ablate.py"), "--configs", str(long), str(short), "--seeds", "0",
               "--work-dir", str(work), "--jobs", "2", "--no-progress", "eval.interval=0"]
    launcher = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    workers: list[psutil.Process] = []
    try:
        short_info = work / "short" / "seed0" / "run_info.json"
        wait_until_exist(launcher, short_info, work / "long" / "seed0" / "checkpoints" / "last.pth")
        assert json.loads(short_info.read_text())["finished"]
        workers = psutil.Process(launcher.pid).children(recursive=True)
        assert len(workers) >= 2
        launcher.send_signal(signal.SIGTERM)
        _, stderr = launcher.communicate(timeout=60)
        assert launcher.returncode != 0
        _, alive = psutil.wait_procs(workers, timeout=30)
        assert alive == []
        assert "Traceback" not in stderr, stderr  # the busy run's own stop is tested above
    finally:
        for process in workers:
            if process.is_running():
                process.kill()
        if launcher.poll() is None:
            launcher.kill()
