"""Exact resume at any point: a real training process killed with SIGKILL mid-epoch, resumed with
``--resume``, ends with bitwise the weights of an uninterrupted run; a truncated newest checkpoint is
detected and the previous one used.

Why bitwise equality is possible: the checkpoint holds model, optimizer, scheduler, scaler, EMA and
criterion state, the epoch, the iteration inside it and the RNG states; the loader's order is a
function of ``(seed, epoch)`` and the resumed sampler skips the batches already consumed; the
augmentation of a sample is drawn from a generator seeded by ``(seed, epoch, index)``, so loader
workers (none here, for speed) carry no state that matters.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from centernet.config import load_config
from centernet.engine.checkpoint import load_checkpoint, save_checkpoint
from centernet.engine.trainer import Trainer
from tests.conftest import REPO, TINY_CONFIG

# 2 epochs x 3 iterations; checkpoints after iterations 2 (mid-epoch), 3 (epoch end), 4 (mid-epoch), 6
OVERRIDES = [
    "runtime.checkpoint_interval=2", "runtime.keep_checkpoints=3", "eval.interval=0", "solver.ema=true",
    "solver.ema_warmup_iters=2", "solver.schedule=cosine",
]
TTFNET = ["target.heatmap=elliptical", "target.box=gaussian_area", "model.head.box=ltrb", "loss.box.type=giou"]
ALBUMENTATIONS = ["augment.albumentations=[{type: RandomRotate90, p: 0.5}, {type: VerticalFlip, p: 0.5}, "
                  "{type: HueSaturationValue, hue_shift_limit: 10, p: 0.5}, {type: RandomBrightnessContrast, p: 0.5}]"]
SETUPS = {"centernet": OVERRIDES, "ttfnet": [*OVERRIDES, *TTFNET],
          "albumentations": [*OVERRIDES, *ALBUMENTATIONS]}  # each resumes exactly
KILL_BEFORE_ITERATION = 6  # the child stops once 5 iterations are done: one past the checkpoint at 4
CHILD_TIMEOUT_S = 180

CHILD = """
import sys, time
from pathlib import Path
from centernet.engine.trainer import Trainer

healthy_step = Trainer.train_step

def train_step(self, batch):
    if self.iteration + 1 == {kill_before}:
        Path({marker!r}).write_text(str(self.iteration))
        time.sleep(600)  # the parent kills the process here, mid-epoch
    return healthy_step(self, batch)

Trainer.train_step = train_step
sys.argv = ["train.py", *{argv!r}]
exec(compile(Path({train!r}).read_text(), "train.py", "exec"), {{"__name__": "__main__"}})
"""


def weights_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def wait_for_file(child: subprocess.Popen[str], path: Path, what: str) -> None:
    """Wait until ``child`` writes ``path`` (it reached ``what``); fail with its stderr if it ends first."""
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while not path.exists():
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
        assert time.monotonic() < deadline, f"the child never reached {what}"
        time.sleep(0.05)


def run_until_killed(config: Path, work_dir: Path, tmp_path: Path, overrides: list[str]) -> None:
    """Start the training CLI in a child process and SIGKILL it in the middle of epoch 2."""
    marker = tmp_path / "paused"
    argv = ["--config", str(config), "--work-dir", str(work_dir), "--no-progress", *overrides]
    script = CHILD.format(kill_before=KILL_BEFORE_ITERATION, marker=str(marker), argv=argv,
                          train=str(REPO / "tools" / "train.py"))
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    wait_for_file(child, marker, "the kill point")
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL


def resume_cli(config: Path, work_dir: Path, overrides: list[str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(REPO / "tools" / "train.py"), "--config", str(config), "--work-dir", str(work_dir),
               "--no-progress", *overrides, "--resume"]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)


@pytest.fixture(scope="module", params=list(SETUPS))
def straight_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_shapes: Path
) -> tuple[Path, Trainer, list[str]]:
    """The uninterrupted reference run (2 epochs, checkpoints at iterations 2, 3, 4 and 6) of a setup:
    (config, trainer, overrides)."""
    root = tmp_path_factory.mktemp("straight")
    config = root / "tiny.yaml"
    config.write_text(TINY_CONFIG.format(base=REPO / "configs" / "shapes_resnet18.yaml", root=tiny_shapes))
    overrides = SETUPS[request.param]
    trainer = Trainer.from_config(load_config(config, overrides), root / "straight", progress=False)
    trainer.fit()
    return config, trainer, overrides


def test_sigkill_mid_epoch_then_resume_gives_bitwise_identical_weights(
    straight_run: tuple[Path, Trainer, list[str]], tmp_path: Path
) -> None:
    config, straight, overrides = straight_run
    work_dir = tmp_path / "killed"
    run_until_killed(config, work_dir, tmp_path, overrides)
    state = load_checkpoint(work_dir / "checkpoints" / "last.pth")
    assert (state["epoch"], state["iteration"], state["epoch_iter"]) == (1, 4, 1)  # mid-epoch 2
    assert not weights_equal(state["model"], straight.model.state_dict())

    result = resume_cli(config, work_dir, overrides)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resumed from" in result.stderr and "iteration 4 (1 into the epoch)" in result.stderr
    final = load_checkpoint(work_dir / "checkpoints" / "last.pth")
    assert final["iteration"] == 6
    assert any(k.startswith("head.ltrb.") for k in final["model"]) == ("model.head.box=ltrb" in overrides)
    assert weights_equal(final["model"], straight.model.state_dict())
    assert weights_equal(final["ema"]["model"], straight.ema.module.state_dict())  # type: ignore[union-attr]
    assert weights_equal(final["optimizer"]["state"][0], straight.optimizer.state_dict()["state"][0])
    assert sorted(p.name for p in (work_dir / "checkpoints").glob("iter_*.pth")) == [
        "iter_000000003.pth", "iter_000000004.pth", "iter_000000006.pth"
    ]  # keep_checkpoints=3


def test_truncated_newest_checkpoint_falls_back_to_the_previous_one(
    straight_run: tuple[Path, Trainer, list[str]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config, straight, overrides = straight_run
    work_dir = tmp_path / "run"
    assert straight.store is not None
    shutil.copytree(straight.store.folder, work_dir / "checkpoints")
    newest = work_dir / "checkpoints" / "iter_000000006.pth"
    for path in (newest, work_dir / "checkpoints" / "last.pth"):  # one file (hard link) in a run folder
        path.write_bytes(path.read_bytes()[:1000])

    with caplog.at_level(logging.WARNING, logger="centernet"):
        resumed = Trainer.from_config(load_config(config, overrides), work_dir, resume=True, progress=False)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("last.pth is corrupt" in w for w in warnings)
    assert any("iter_000000006.pth is corrupt" in w for w in warnings)
    assert (resumed.epoch, resumed.iteration, resumed.epoch_iter) == (1, 4, 1)  # iter_000000004.pth, mid-epoch
    resumed.fit()
    assert weights_equal(resumed.model.state_dict(), straight.model.state_dict())


def test_every_checkpoint_unreadable_is_an_error(tiny_config: Callable[..., Path], tmp_path: Path) -> None:
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "last.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"no readable checkpoint in .*checkpoints: .*last\.pth"):
        Trainer.from_config(load_config(tiny_config(), OVERRIDES), tmp_path / "run", resume=True, progress=False)


def test_checkpoint_of_another_architecture_is_refused_naming_the_file(
    tiny_config: Callable[..., Path], tmp_path: Path
) -> None:
    other_cfg = load_config(tiny_config(), ["model.head.head_conv=8"])
    other = Trainer.from_config(other_cfg, tmp_path / "other", progress=False)
    foreign = tmp_path / "foreign.pth"
    save_checkpoint(other.state_dict(), foreign)
    expected = r"cannot resume from .*foreign\.pth: its weights do not fit this model: .*shapes differ \(first: head\."
    with pytest.raises(ValueError, match=expected):
        Trainer.from_config(load_config(tiny_config()), tmp_path / "run", resume=foreign, progress=False)
