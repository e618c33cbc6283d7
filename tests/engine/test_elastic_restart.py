"""A real ``torchrun --max-restarts`` group on the CPU (Gloo): one of its 2 ranks is killed with SIGKILL in the
middle of an epoch; the elastic agent restarts the group and ``tools/train.py`` resumes by itself from the newest
checkpoint, redoing at most the steps since it, and ends with the weights of an uninterrupted 2-rank run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from centernet.engine.checkpoint import load_checkpoint
from tests.conftest import REPO, TINY_CONFIG

TIMEOUT_S = 300
PAUSE_AT = 5  # rank 1 stops inside iteration 5 (epoch 2 of 3 steps) on the first attempt
OVERRIDES = ["solver.epochs=3", "runtime.device=cpu", "runtime.amp=off", "data.batch_size=2", "eval.interval=0",
             "runtime.checkpoint_interval=1", "runtime.keep_checkpoints=10", "solver.optimizer=sgd", "solver.lr=0.05"]

WRAPPER = """
import os, sys, time
from pathlib import Path
from centernet.engine.trainer import Trainer

healthy_step = Trainer.train_step

def train_step(self, batch):
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    if first_attempt and self.dist.rank == 1 and self.iteration + 1 == {pause_at}:
        Path({marker!r}).write_text(str(os.getpid()))
        time.sleep(600)  # the test kills this rank here
    return healthy_step(self, batch)

Trainer.train_step = train_step
sys.argv = ["train.py", *sys.argv[1:]]
exec(compile(Path({train!r}).read_text(), "train.py", "exec"), {{"__name__": "__main__"}})
"""


def torchrun_command(script: Path, args: list[str], restarts: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            f"--max-restarts={restarts}", str(script), *args]


@pytest.fixture
def config(tmp_path: Path, tiny_shapes: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG.format(base=REPO / "configs" / "shapes_resnet18.yaml", root=tiny_shapes))
    return path


def test_sigkill_of_one_rank_is_survived_by_an_elastic_restart(config: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    marker = tmp_path / "rank1.pid"
    wrapper = tmp_path / "train_wrapper.py"
    wrapper.write_text(WRAPPER.format(pause_at=PAUSE_AT, marker=str(marker), train=str(REPO / "tools" / "train.py")))
    work_dir = tmp_path / "elastic"
    args = ["--config", str(config), "--work-dir", str(work_dir), "--no-progress", *OVERRIDES]
    # 3 restarts allowed: under load a restarted rank can start too late for its peer's Gloo connection
    # attempts, which costs one more restart of the group (the first attempt is the only one that pauses)
    group = subprocess.Popen(torchrun_command(wrapper, args, restarts=3), cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + TIMEOUT_S
    while not marker.exists():
        assert group.poll() is None, group.stderr.read() if group.stderr else ""
        assert time.monotonic() < deadline, "rank 1 never reached the kill point"
        time.sleep(0.1)
    time.sleep(0.2)  # the pid is written before the sleep starts
    os.kill(int(marker.read_text()), signal.SIGKILL)
    _, stderr = group.communicate(timeout=TIMEOUT_S)
    assert group.returncode == 0, stderr[-3000:]
    assert re.search(r"elastic restart \d: resuming from the newest checkpoint", stderr)
    assert "iteration 4 (1 into the epoch)" in stderr  # the checkpoint after step 4: one step redone

    straight_dir = tmp_path / "straight"
    straight = subprocess.run(torchrun_command(REPO / "tools" / "train.py", [
        "--config", str(config), "--work-dir", str(straight_dir), "--no-progress", *OVERRIDES], restarts=0),
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert straight.returncode == 0, straight.stderr[-3000:]
    resumed = load_checkpoint(work_dir / "checkpoints" / "last.pth")
    reference = load_checkpoint(straight_dir / "checkpoints" / "last.pth")
    assert resumed["iteration"] == reference["iteration"] == 9
    for key, value in reference["model"].items():
        assert torch.equal(resumed["model"][key], value), key
