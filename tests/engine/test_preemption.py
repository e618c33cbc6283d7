"""A signal stops training at the next step boundary: real training processes, real signals sent with
``os.kill`` while the child waits at a chosen step (or inside an evaluation); the checkpoint it writes,
its exit code, and ``--auto-resume`` finishing with bitwise the weights of an uninterrupted run."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from centernet.config import load_config
from centernet.engine.checkpoint import load_checkpoint
from centernet.engine.preemption import StopRequest, TrainingStopped, signal_numbers
from centernet.engine.trainer import Trainer
from tests.conftest import REPO
from tests.engine.test_resume import wait_for_file, weights_equal

# 2 epochs x 3 iterations, evaluation after each epoch, EMA and a cosine schedule (all resumed exactly)
OVERRIDES = ["eval.interval=1", "solver.ema=true", "solver.ema_warmup_iters=2", "solver.schedule=cosine",
             "runtime.keep_checkpoints=5"]
CHILD_TIMEOUT_S = 180

# Runs tools/train.py; at the chosen point it writes ``paused`` and waits until the parent writes ``go``
# (the parent sends its signals in between). The pause wraps a method; the loop itself runs unchanged.
CHILD = """
import sys, time
from pathlib import Path
from centernet.engine.hooks import EvalHook
from centernet.engine.trainer import Trainer

def wait_for_parent():
    Path({paused!r}).write_text("paused")
    while not Path({go!r}).exists():
        time.sleep(0.02)

healthy_step, healthy_eval = Trainer.train_step, EvalHook.run

def train_step(self, batch):
    if self.iteration + 1 == {pause_at}:
        wait_for_parent()
    return healthy_step(self, batch)

def run(self):
    if {in_eval} and self.trainer.epoch == 1:
        wait_for_parent()
    return healthy_eval(self)

Trainer.train_step, EvalHook.run = train_step, run
sys.argv = ["train.py", *{argv!r}]
exec(compile(Path({train!r}).read_text(), "train.py", "exec"), {{"__name__": "__main__"}})
"""


def run_and_signal(config: Path, work_dir: Path, tmp_path: Path, signals: list[int], *, pause_at: int = 0,
                   in_eval: bool = False) -> subprocess.CompletedProcess[str]:
    """Start training, wait for the pause point, send ``signals`` (in order), let it go on; its result."""
    paused, go = tmp_path / "paused", tmp_path / "go"
    argv = ["--config", str(config), "--work-dir", str(work_dir), "--no-progress", *OVERRIDES]
    script = CHILD.format(paused=str(paused), go=str(go), pause_at=pause_at, in_eval=in_eval, argv=argv,
                          train=str(REPO / "tools" / "train.py"))
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    wait_for_file(child, paused, "the pause point")
    for signum in signals:
        os.kill(child.pid, signum)
        time.sleep(0.2)  # each handled before the next (a handler runs between bytecodes of the main thread)
    go.write_text("go")
    _, stderr = child.communicate(timeout=CHILD_TIMEOUT_S)
    return subprocess.CompletedProcess(child.args, child.returncode, "", stderr)


def auto_resume(config: Path, work_dir: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(REPO / "tools" / "train.py"), "--config", str(config), "--work-dir",
               str(work_dir), "--no-progress", *OVERRIDES, "--auto-resume"]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory, tiny_shapes: Path) -> tuple[Path, Trainer]:
    """The uninterrupted run: (config, trainer)."""
    from tests.conftest import TINY_CONFIG

    root = tmp_path_factory.mktemp("straight")
    config = root / "tiny.yaml"
    config.write_text(TINY_CONFIG.format(base=REPO / "configs" / "shapes_resnet18.yaml", root=tiny_shapes))
    trainer = Trainer.from_config(load_config(config, OVERRIDES), root / "run", progress=False)
    trainer.fit()
    return config, trainer


def test_sigterm_mid_epoch_checkpoints_exits_143_and_auto_resume_is_exact(
    straight: tuple[Path, Trainer], tmp_path: Path
) -> None:
    config, reference = straight
    work_dir = tmp_path / "run"
    stopped = run_and_signal(config, work_dir, tmp_path, [signal.SIGTERM], pause_at=5)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    assert "stopped by SIGTERM after iteration 5 (epoch 2, 2 into it)" in stopped.stderr
    assert "rerun the same command with --auto-resume" in stopped.stderr
    state = load_checkpoint(work_dir / "checkpoints" / "last.pth")
    assert (state["epoch"], state["iteration"], state["epoch_iter"]) == (1, 5, 2)  # the step it was in finished
    assert (work_dir / "checkpoints" / "iter_000000005.pth").is_file()

    resumed = auto_resume(config, work_dir)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "iteration 5 (2 into the epoch)" in resumed.stderr
    final = load_checkpoint(work_dir / "checkpoints" / "last.pth")
    assert final["iteration"] == 6
    assert weights_equal(final["model"], reference.model.state_dict())
    assert weights_equal(final["ema"]["model"], reference.ema.module.state_dict())  # type: ignore[union-attr]


def test_signal_during_evaluation_waits_for_it_and_the_epoch_checkpoint(
    straight: tuple[Path, Trainer], tmp_path: Path
) -> None:
    config, _ = straight
    work_dir = tmp_path / "run"
    # SIGUSR1 (SLURM's --signal), then SIGTERM and SIGINT while stopping: the first one decides, the stop completes
    stopped = run_and_signal(config, work_dir, tmp_path, [signal.SIGUSR1, signal.SIGTERM, signal.SIGINT],
                             in_eval=True)
    assert stopped.returncode == 128 + signal.SIGUSR1, stopped.stderr[-2000:]
    assert "stopped by SIGUSR1 after iteration 3 (end of epoch 1)" in stopped.stderr
    assert (work_dir / "eval" / "metrics.json").is_file()  # the evaluation ran to its end
    assert sorted(p.name for p in (work_dir / "checkpoints").glob("iter_*.pth")) == ["iter_000000003.pth"]
    state = load_checkpoint(work_dir / "checkpoints" / "last.pth")
    assert (state["epoch"], state["iteration"], state["epoch_iter"]) == (1, 3, 0)
    assert not list((work_dir / "checkpoints").glob(".*tmp"))  # no half-written file


def test_stop_request_records_the_first_signal_and_restores_handlers() -> None:
    previous = signal.getsignal(signal.SIGUSR2)
    request = StopRequest([signal.SIGUSR2])
    assert request.install()
    os.kill(os.getpid(), signal.SIGUSR2)
    os.kill(os.getpid(), signal.SIGUSR2)
    assert request.signum == signal.SIGUSR2
    request.restore()
    assert signal.getsignal(signal.SIGUSR2) is previous
    stop = TrainingStopped(signal.SIGUSR2, epoch=0, epoch_iter=7, iteration=7, checkpoint="ck.pth")
    assert stop.exit_code == 128 + signal.SIGUSR2
    assert "SIGUSR2 after iteration 7 (epoch 1, 7 into it); checkpoint ck.pth" in str(stop)


def test_unknown_stop_signal_is_refused(tiny_config: Callable[..., Path], tmp_path: Path) -> None:
    assert signal_numbers(["SIGTERM", "SIGUSR2"]) == [signal.SIGTERM, signal.SIGUSR2]
    with pytest.raises(ValueError, match=r"runtime\.stop_signals: SIGKILL not allowed; choose from SIGTERM"):
        Trainer.from_config(load_config(tiny_config(), ["runtime.stop_signals=[SIGKILL]"]), tmp_path / "r",
                            progress=False)


@pytest.mark.parametrize(("minutes", "expected"), [(0.0, [3, 6]), (1e-6, [1, 2, 3, 4, 5, 6])])
def test_checkpoint_minutes_saves_mid_epoch_once_the_time_passed(
    tiny_config: Callable[..., Path], tmp_path: Path, minutes: float, expected: list[int]
) -> None:
    # 1e-6 minutes have always passed since the last save: a checkpoint after every step; 0 = epoch ends only
    cfg = load_config(tiny_config(), ["eval.interval=0", "runtime.keep_checkpoints=10",
                                      f"runtime.checkpoint_minutes={minutes}"])
    trainer = Trainer.from_config(cfg, tmp_path / "run", progress=False)
    trainer.fit()
    saved = sorted(int(p.stem.split("_")[1]) for p in (tmp_path / "run" / "checkpoints").glob("iter_*.pth"))
    assert saved == expected


def test_a_stretched_schedule_is_one_warning_line(tiny_config: Callable[..., Path], tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    # 3 steps per epoch: solver.min_iters=30 turns the 2 epochs into 10; a smoke run must see that at once
    with caplog.at_level(logging.WARNING, logger="centernet"):
        Trainer.from_config(load_config(tiny_config(), ["solver.min_iters=30"]), tmp_path / "run", progress=False)
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and "min_iters" in r.getMessage()]
    assert warnings == ["solver.min_iters=30 stretches solver.epochs=2 to 10 epochs (30 steps); set solver.min_iters=0 "
                        "to train exactly solver.epochs"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="centernet"):
        Trainer.from_config(load_config(tiny_config(), ["solver.min_iters=6"]), tmp_path / "run2", progress=False)
    assert not [r for r in caplog.records if "min_iters" in r.getMessage()]  # 6 steps: no stretch, no line


def test_an_elastic_restart_resumes_without_flags(straight: tuple[Path, Trainer], tmp_path: Path) -> None:
    config, reference = straight
    work_dir = tmp_path / "run"
    stopped = run_and_signal(config, work_dir, tmp_path, [signal.SIGTERM], pause_at=2)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-2000:]
    # what torchrun's elastic agent sets in a restarted worker group; the command line is the first one
    command = [sys.executable, str(REPO / "tools" / "train.py"), "--config", str(config), "--work-dir",
               str(work_dir), "--no-progress", *OVERRIDES]
    restarted = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S,
                               env={**os.environ, "TORCHELASTIC_RESTART_COUNT": "1"})
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    assert "elastic restart 1: resuming from the newest checkpoint" in restarted.stderr
    assert "iteration 2 (2 into the epoch)" in restarted.stderr
    final = load_checkpoint(work_dir / "checkpoints" / "last.pth")
    assert weights_equal(final["model"], reference.model.state_dict())


def test_resuming_on_another_number_of_ranks_says_what_changes(tiny_config: Callable[..., Path], tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    trainer = Trainer.from_config(load_config(tiny_config()), tmp_path / "run", progress=False)
    state = {**trainer.state_dict(), "world_size": 2}
    with caplog.at_level(logging.WARNING, logger="centernet"):
        trainer.load_state_dict(state, tmp_path / "ddp.pth")
    assert "ddp.pth was written by 2 ranks and resumes on 1" in caplog.text
    assert "training continues" in caplog.text
