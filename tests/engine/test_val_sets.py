"""Several named val sets: per-set outputs, metrics.jsonl records and TensorBoard tags, best.pth by
``eval.best_metric`` with its own F1-best score threshold, and the eval tool on every set or one."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from centernet.config import load_config
from centernet.engine.checkpoint import CheckpointStore, load_checkpoint
from centernet.engine.hooks import CheckpointHook, EvalHook
from centernet.engine.logging import MetricsLogger
from centernet.engine.trainer import Trainer
from tests.conftest import load_script
from tests.engine.test_trainer_unit import make_trainer

TWO_SETS = """\
_base_: tiny.yaml
data:
  val:
    - {{name: held_out, type: coco, ann_file: {root}/annotations/instances_val.json, img_dir: {root}/val}}
    - {{name: seen, type: coco, ann_file: {root}/annotations/instances_train.json, img_dir: {root}/train}}
solver: {{epochs: 1}}
eval: {{best_metric: seen/AP50}}
"""
EVAL_FILES = ("metrics.json", "detections.json", "pr_curves.png", "f1_curve.png", "predictions.png")

# Scripted evaluations of three epochs: set b's AP50 is best at epoch 2, set a's AP at epoch 3.
SCRIPTED = [
    {"a/AP": 0.5, "a/best_f1_threshold": 0.1, "b/AP50": 0.2, "b/best_f1_threshold": 0.35},
    {"a/AP": 0.1, "a/best_f1_threshold": 0.2, "b/AP50": 0.6, "b/best_f1_threshold": 0.42},
    {"a/AP": 0.9, "a/best_f1_threshold": 0.3, "b/AP50": 0.3, "b/best_f1_threshold": 0.7},
]


def scripted_run(tmp_path: Path, metric: str, threshold_key: str) -> Trainer:
    evaluations: Iterator[dict[str, Any]] = iter(SCRIPTED)
    trainer = make_trainer(epochs=3, batches=1, hook=EvalHook(lambda: next(evaluations), 1,
                                                                 MetricsLogger(tmp_path), sets=["a", "b"]))
    trainer.register_hooks([CheckpointHook(metric, threshold_key=threshold_key)])
    trainer.store = CheckpointStore(tmp_path / "checkpoints", keep=2)
    trainer.fit()
    trainer.hooks[0].metrics_logger.close()  # type: ignore[attr-defined]
    return trainer


def test_best_checkpoint_follows_the_named_metric_and_keeps_its_threshold(tmp_path: Path) -> None:
    scripted_run(tmp_path, "b/AP50", "b/best_f1_threshold")
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pth")
    assert best["epoch"] == 2 and best["best_metric"] == 0.6 and best["score_threshold"] == 0.42
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pth")
    assert last["epoch"] == 3 and last["score_threshold"] == 0.7  # the latest evaluation's

    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["set"]) for r in records] == [(1, "a"), (1, "b"), (2, "a"), (2, "b"), (3, "a"), (3, "b")]
    assert records[3] == {"type": "val", "epoch": 2, "iter": 2, "set": "b", "AP50": 0.6, "best_f1_threshold": 0.42}
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert {"val/a/AP", "val/b/AP50", "val/b/best_f1_threshold"} <= set(events.Tags()["scalars"])
    assert [round(e.value, 6) for e in events.Scalars("val/b/AP50")] == [0.2, 0.6, 0.3]


def test_another_metric_picks_another_epoch(tmp_path: Path) -> None:
    scripted_run(tmp_path, "a/AP", "a/best_f1_threshold")
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pth")
    assert best["epoch"] == 3 and best["best_metric"] == 0.9 and best["score_threshold"] == 0.3


def test_a_metric_the_evaluation_does_not_produce_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"eval.best_metric: 'b/AP75' is not an evaluation metric \(known: a/AP"):
        scripted_run(tmp_path, "b/AP75", "b/best_f1_threshold")


@pytest.fixture(scope="module")
def two_set_run(tmp_path_factory: pytest.TempPathFactory, tiny_shapes: Path) -> tuple[Path, Path]:
    """One epoch on the tiny shapes with two named val sets: (config path, work dir)."""
    from tests.conftest import REPO, TINY_CONFIG

    root = tmp_path_factory.mktemp("sets")
    tiny = TINY_CONFIG.format(base=REPO / "configs" / "shapes_resnet18.yaml", root=tiny_shapes)
    (root / "tiny.yaml").write_text(tiny)
    config = root / "two_sets.yaml"
    config.write_text(TWO_SETS.format(root=tiny_shapes))
    work_dir = root / "work"
    Trainer.from_config(load_config(config), work_dir, progress=False).fit()
    return config, work_dir


def test_training_evaluates_every_named_set(two_set_run: tuple[Path, Path]) -> None:
    _, work_dir = two_set_run
    for name in ("held_out", "seen"):
        for file in EVAL_FILES:
            assert (work_dir / "eval" / name / file).is_file(), (name, file)
    assert not (work_dir / "eval" / "metrics.json").exists()
    sizes = {name: len(json.loads((work_dir / "eval" / name / "detections.json").read_text()))
             for name in ("held_out", "seen")}
    assert sizes == {"held_out": 4 * 100, "seen": 12 * 100}  # images x top-100

    records = [json.loads(line) for line in (work_dir / "metrics.jsonl").read_text().splitlines()]
    val = {r["set"]: r for r in records if r["type"] == "val"}
    assert set(val) == {"held_out", "seen"} and all(r["epoch"] == 1 for r in val.values())
    for name, record in val.items():
        saved = json.loads((work_dir / "eval" / name / "metrics.json").read_text())
        assert record["AP50"] == pytest.approx(saved["AP50"], abs=1e-6)
        assert record["recall@0.4"] == pytest.approx(saved["recall@0.4"], abs=1e-6)
    events = EventAccumulator(str(work_dir / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for name in ("held_out", "seen"):
        assert {f"val/{name}/AP", f"val/{name}/AP50", f"val/{name}/f1@0.4"} <= tags
        assert events.Scalars(f"val/{name}/AP50")[-1].value == pytest.approx(val[name]["AP50"], abs=1e-6)

    best = load_checkpoint(work_dir / "checkpoints" / "best.pth")
    assert best["best_metric"] == pytest.approx(val["seen"]["AP50"], abs=1e-9)
    assert best["score_threshold"] == val["seen"]["best_f1_threshold"]


def test_eval_tool_evaluates_every_set_or_the_named_one(two_set_run: tuple[Path, Path], tmp_path: Path) -> None:
    config, work_dir = two_set_run
    eval_tool = load_script("tools/eval.py")
    checkpoint = str(work_dir / "checkpoints" / "last.pth")
    assert eval_tool.main(["--config", str(config), "--checkpoint", checkpoint, "--out-dir", str(tmp_path / "all"),
                           "--no-progress"]) == 0
    for name in ("held_out", "seen"):
        tool = json.loads((tmp_path / "all" / name / "metrics.json").read_text())
        training = json.loads((work_dir / "eval" / name / "metrics.json").read_text())
        assert {key: tool[key] for key in training} == training  # plus what produced them
        assert tool["checkpoint"] == checkpoint
    predictions = str(work_dir / "eval" / "seen" / "detections.json")
    assert eval_tool.main(["--config", str(config), "--predictions", predictions, "--val-set", "seen",
                           "--out-dir", str(tmp_path / "one")]) == 0
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["seen"]


def test_eval_tool_rejects_an_unknown_set(two_set_run: tuple[Path, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    config, work_dir = two_set_run
    eval_tool = load_script("tools/eval.py")
    predictions = str(work_dir / "eval" / "seen" / "detections.json")
    cases = ((["--val-set", "yell"], "--val-set 'yell' is not a set of data.val (one of held_out, seen)"),
             ([], "data.val has several sets (held_out, seen); name its set with --val-set"))
    for extra, expected in cases:
        capsys.readouterr()
        assert eval_tool.main(["--config", str(config), "--predictions", predictions, *extra,
                               "--out-dir", str(tmp_path)]) == 1
        errors = [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]
        assert len(errors) == 1 and expected in errors[0], errors


def test_bad_set_names_are_one_line_errors(tiny_config: Callable[..., Path]) -> None:
    from centernet.config import ConfigError

    cases = {
        "[{name: a-b, type: coco}]": "data.val[0].name: 'a-b' is not an identifier",
        "[{name: a, type: coco}, {name: a, type: coco}]": "data.val[1].name: 'a' is used twice",
        "[]": "data.val: the list of named val sets is empty",
    }
    for value, expected in cases.items():
        with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]")):
            load_config(tiny_config(), [f"data.val={value}"])
    with pytest.raises(ConfigError, match=r"eval.best_metric: 'other/AP' is not <set>/<metric> with a set of data.val"):
        load_config(tiny_config(), ["data.val=[{name: a, type: coco}]", "eval.best_metric=other/AP"])
    with pytest.raises(ConfigError, match=r"eval.best_metric: 'a/AP' names a set, but data.val is a single"):
        load_config(tiny_config(), ["eval.best_metric=a/AP"])


def test_trees_config_selects_on_one_part_of_the_hold_out_and_reports_on_the_other() -> None:
    from tests.conftest import REPO

    prepare_trees = load_script("datasets/prepare_trees.py")
    cfg = load_config(REPO / "configs" / "trees_efficientnet_lite0.yaml")
    assert isinstance(cfg.data.val, list)
    assert [(s.name, Path(s.ann_file).name) for s in cfg.data.val] == [
        ("yell_select", f"instances_{prepare_trees.SELECT_SPLIT}.json"),
        ("yell_report", f"instances_{prepare_trees.REPORT_SPLIT}.json"),
        ("yell", f"instances_{prepare_trees.HOLDOUT_SPLIT}.json"), ("cross_site", "instances_val.json"),
        ("yell_strips", f"instances_{prepare_trees.STRIPS_SPLIT}.json")]
    assert cfg.eval.best_metric == "yell_select/AP"  # chosen on the selection set, reported on yell_report
    # the strips are scored in 400-px windows at the tiles' training scale (384 px network input)
    strips = cfg.data.val[4].slice
    assert strips is not None and (strips.size, strips.overlap, round(strips.size * strips.scale)) == (400, 0.25, 384)
    assert cfg.data.val[0].slice is None and cfg.eval.slice.size == 0 and cfg.eval.max_dets == 300


def test_auto_resume_reports_a_finished_named_set_run(two_set_run: tuple[Path, Path],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`make demo` a second time: a named-set run (no eval/metrics.json) is finished, not resumed."""
    config, work_dir = two_set_run
    before = {p: p.stat().st_mtime_ns for p in work_dir.rglob("*") if p.is_file()}
    train_tool = load_script("tools/train.py")
    assert train_tool.main(["--config", str(config), "--work-dir", str(work_dir), "--auto-resume"]) == 0
    err = capsys.readouterr().err
    assert "holds a finished run" in err
    for name in ("held_out", "seen"):
        assert str(work_dir / "eval" / name / "metrics.json") in err
    assert {p: p.stat().st_mtime_ns for p in work_dir.rglob("*") if p.is_file()} == before


def test_a_stretched_plan_is_not_finished_at_solver_epochs(tmp_path: Path) -> None:
    """solver.min_iters stretched 1 epoch to 3: the checkpoint's max_epochs, not solver.epochs, says when
    a run is over."""
    from centernet.engine.checkpoint import save_checkpoint
    from centernet.engine.run_dir import plan_run_dir

    (tmp_path / "eval" / "a").mkdir(parents=True)
    (tmp_path / "eval" / "a" / "metrics.json").write_text("{}")
    last = tmp_path / "checkpoints" / "last.pth"
    save_checkpoint({"epoch": 1, "max_epochs": 3}, last)
    plan = plan_run_dir(tmp_path, epochs=1, resume=None, overwrite=False, auto_resume=True, val_sets=["a"])
    assert (plan.resume, plan.finished) == (True, False)
    save_checkpoint({"epoch": 3, "max_epochs": 3}, last)
    plan = plan_run_dir(tmp_path, epochs=1, resume=None, overwrite=False, auto_resume=True, val_sets=["a"])
    assert plan.finished
    plan = plan_run_dir(tmp_path, epochs=1, resume=None, overwrite=False, auto_resume=True, val_sets=["a", "b"])
    assert (plan.resume, plan.finished) == (True, False)  # set b was never evaluated: evaluate it


def test_checkpoints_record_the_planned_epochs(two_set_run: tuple[Path, Path]) -> None:
    _, work_dir = two_set_run
    assert load_checkpoint(work_dir / "checkpoints" / "last.pth")["max_epochs"] == 1
