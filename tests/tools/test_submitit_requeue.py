"""A study run submitted through submitit (its local executor, real job processes) is preempted with the job's
signal: it writes a checkpoint at the next step, submitit requeues it, and the requeued job resumes from that
step and ends with the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from centernet.config import load_config
from centernet.engine.checkpoint import load_checkpoint
from centernet.engine.trainer import Trainer
from tests.conftest import REPO

EPOCHS = 12  # 36 steps: long enough to be preempted in the middle
TIMEOUT_S = 300


def job_processes(launcher: subprocess.Popen[str]) -> list[object]:
    """The submitit job processes under the launcher."""
    psutil = pytest.importorskip("psutil")
    return [p for p in psutil.Process(launcher.pid).children(recursive=True)
            if "submitit.core._submit" in " ".join(p.cmdline())]


def test_preempted_submitit_job_checkpoints_requeues_and_resumes(
    tiny_config: Callable[..., Path], tmp_path: Path
) -> None:
    pytest.importorskip("submitit")
    import signal

    config = tiny_config(name="tiny.yaml")
    overrides = [f"solver.epochs={EPOCHS}", "eval.interval=0", "runtime.device=cpu"]
    work = tmp_path / "study"
    command = [sys.executable, str(REPO / "tools" / "ablate.py"), "--configs", str(config), "--seeds", "0",
               "--work-dir", str(work), "--launcher", "submitit", "--cluster", "local", "--gpus-per-node", "0",
               "--cpus-per-task", "1", "--timeout", "30", "--no-progress", *overrides]
    launcher = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run = work / "tiny" / "seed0"
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not (run / "checkpoints" / "last.pth").exists():  # epoch 1 done: the job is training
            assert launcher.poll() is None and time.monotonic() < deadline, "the job did not start training"
            time.sleep(0.2)
        (job,) = job_processes(launcher)
        os.kill(job.pid, signal.SIGUSR2)  # what SLURM sends a submitit job ahead of preemption or time-out
        _, stderr = launcher.communicate(timeout=TIMEOUT_S)
        assert launcher.returncode == 0, stderr[-3000:]
    finally:
        if launcher.poll() is None:
            launcher.kill()
    logs = "".join(path.read_text() for path in (work / "submitit").glob("*_log.*"))
    assert "handed to the job's own handler (requeue)" in logs and "Requeued job" in logs
    found = re.search(r"checkpoint \S*iter_(\d+)\.pth written", logs)
    assert found, logs[-3000:]
    stop = int(found.group(1))  # the step it stopped after
    assert 3 <= stop < 3 * EPOCHS
    info = json.loads((run / "run_info.json").read_text())
    assert info["finished"] and info["sessions"] == 2
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["iter"] for r in records if r["type"] == "train"]
    assert len(train_steps) == len(set(train_steps)) == 3 * EPOCHS  # no step lost, none redone

    straight = Trainer.from_config(load_config(config, [*overrides, "runtime.seed=0"]), tmp_path / "straight",
                                   progress=False)  # --seeds 0 is runtime.seed=0
    straight.fit()
    final = load_checkpoint(run / "checkpoints" / "last.pth")
    for key, value in straight.model.state_dict().items():
        assert torch.equal(final["model"][key], value), key
