"""tools/ablate.py --tune: each arm searched on the selection set, its best setting reported on another set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY_CONFIG, load_script

ablate = load_script("tools/ablate.py")

# the tiny config with two named sets: `pick` (the training images, which a few steps can fit) selects,
# `report` (the val images) reports
TWO_SETS = """\
  val:
    - {{name: pick, type: coco, ann_file: {root}/annotations/instances_train.json, img_dir: {root}/train}}
    - {{name: report, type: coco, ann_file: {root}/annotations/instances_val.json, img_dir: {root}/val}}
"""
SPACE = "solver.lr=[0.0, 0.02]"  # lr 0 leaves the head at its prior: no detection finds a box (AP 0)
TUNE_SEEDS = ["--tune-seeds", "317"]
EPOCHS = 12  # of one step: 4 training images of 1-2 shapes


@pytest.fixture(scope="module")
def easy_shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 training images of 1-2 shapes (64 px): a few steps fit them well enough to find some."""
    out = tmp_path_factory.mktemp("easy_shapes")
    load_script("datasets/make_shapes.py").generate_shapes_dataset(
        out, num_train=4, num_val=4, image_size=(64, 64), seed=3, max_objects=2, empty_fraction=0.0)
    return out


@pytest.fixture
def arms(easy_shapes: Path, tmp_path: Path) -> list[str]:
    lines = TINY_CONFIG.format(base=REPO / "configs" / "shapes_resnet18.yaml", root=easy_shapes).splitlines(True)
    base = "".join(TWO_SETS.format(root=easy_shapes) if line.startswith("  val:") else line for line in lines)
    base = base.replace("eval: {interval: 1}", "eval: {interval: 0}")
    paths = []
    for name, extra in (("prfocal", ""), ("bce", "loss:\n  heatmap: {type: bce}\n")):
        path = tmp_path / f"{name}.yaml"
        path.write_text(base + extra)
        paths.append(str(path))
    return paths


def stamps(folder: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in folder.rglob("run_info.json")}


def test_each_arm_picks_its_better_point_on_the_selection_set_and_reports_on_the_other(
    arms: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "study"
    common = ["--seeds", "1", "--work-dir", str(work), "--no-progress", "--tune", SPACE, *TUNE_SEEDS,
              "--select-set", "pick", "--val-set", "report", f"solver.epochs={EPOCHS}"]
    # half a study first: one arm's search and final run, then the two-arm study redoes none of it
    assert ablate.main(["--configs", arms[0], *common]) == 0
    first = stamps(work)
    assert len(first) == 2 + 1
    capsys.readouterr()
    assert ablate.main(["--configs", *arms, *common]) == 0
    err = capsys.readouterr().err
    assert err.count(f"prfocal seed 317 is done ({EPOCHS} epochs): skipped") == 2 and "prfocal seed 1 is done" in err
    assert {path: stamp for path, stamp in stamps(work).items() if path in first} == first
    chosen = {}
    for arm in ("prfocal", "bce"):
        trials = {lr: json.loads((work / arm / "tune" / f"solver.lr={lr}" / "seed317" / "eval" / "pick" /
                                  "metrics.json").read_text())["AP"] for lr in ("0.0", "0.02")}
        assert trials["0.0"] == 0.0, (arm, trials)
        chosen[arm] = "0.02" if trials["0.02"] > trials["0.0"] else "0.0"  # the rule: the earlier point on a tie
        final = work / arm / "seed1"
        assert f"lr: {chosen[arm]}" in (final / "config.yaml").read_text()  # trained with the chosen setting
        assert (final / "eval" / "report" / "metrics.json").is_file()
        assert f"| {arm} | solver.lr={chosen[arm]} |" in (work / "tuning_pick.md").read_text()
    assert chosen["prfocal"] == "0.02"  # the known better point: lr 0 finds nothing
    table = (work / "ablation_report.md").read_text()  # the final runs, reported on `report`
    assert "| prfocal | penalty_reduced_focal | solver.lr=0.02 | 1 |" in table
    assert f"| bce | bce | solver.lr={chosen['bce']} | 1 |" in table
    assert (work / "tuning_pick.png").is_file() and (work / "tuning_pick.csv").is_file()

    # the records of the trials are exported beside the final runs' and count as done in a copy
    kept = tmp_path / "kept"
    assert ablate.main(["--configs", *arms, *common, "--report-only", "--export-records", str(kept)]) == 0
    assert (kept / "bce" / "tune" / "solver.lr=0.0" / "seed317" / "eval" / "pick" / "metrics.json").is_file()
    capsys.readouterr()
    assert ablate.main(["--configs", *arms, *common[:2], "--work-dir", str(kept), *common[4:]]) == 0
    assert capsys.readouterr().err.count(f"is done ({EPOCHS} epochs): skipped") == 2 * 2 + 2


def test_tune_refuses_the_report_set_as_selection_set_and_names_bad_trials(
    arms: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "study"
    common = ["--configs", arms[0], "--seeds", "0", "--work-dir", str(work), "--no-progress"]
    assert ablate.main([*common, "--tune", SPACE, "--select-set", "pick", "--val-set", "pick"]) == 1
    error = [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line][-1]
    assert "the selection set pick is also the report set; report on another with --val-set" in error
    assert not work.exists()
    assert ablate.main([*common, "--tune", "solver.no_such_key=[1, 2]", "--val-set", "report"]) == 1
    error = [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line][-1]
    assert "--tune trial solver.no_such_key=1:" in error and "no_such_key" in error.split("trial", 1)[1][20:]
    assert ablate.main([*common, "--tune", "solver.lr=[fast, 0.1]", "--val-set", "report"]) == 1
    assert "--tune trial solver.lr=fast:" in capsys.readouterr().err
    assert ablate.main([*common, "--tune", SPACE, "solver.lr=0.1", "--val-set", "report"]) == 1
    assert "--tune solver.lr: the key is also set by an override" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ablate.parse_args([*common, "--select-set", "pick"])  # no --tune


def test_a_diverging_trial_is_recorded_and_the_search_goes_on(
    arms: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "study"
    argv = ["--configs", arms[0], "--seeds", "0", "--work-dir", str(work), "--no-progress", "--tune",
            "solver.lr=[1.0e9, 0.001]", "--val-set", "report", "solver.epochs=1"]
    assert ablate.main(argv) == 1  # the failure is reported; the other point still runs and is chosen
    err = capsys.readouterr().err
    assert "non-finite" in err and "prfocal: chose solver.lr=0.001" in err
    failed = work / "prfocal" / "tune" / "solver.lr=1.0e9" / "seed100" / "trial_failed.json"  # default seed
    assert json.loads(failed.read_text())["error"].startswith("non-finite")
    assert "lr: 0.001" in (work / "prfocal" / "seed0" / "config.yaml").read_text()
    assert ablate.main(argv) == 0  # rerun: the diverged trial is not tried again
    assert "failed before: non-finite" in capsys.readouterr().err
    # a one-point space: no tuning, the one setting is the choice
    assert ablate.main([*argv[:6], "--tune", "solver.lr=[0.001]", "--val-set", "report", "solver.epochs=1",
                        "--work-dir", str(tmp_path / "one")]) == 0
    assert "| prfocal | solver.lr=0.001 |" in (tmp_path / "one" / "tuning_pick.md").read_text()
