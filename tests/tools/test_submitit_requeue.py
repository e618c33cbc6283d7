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


def preempt_once(command: list[str], run: Path, logs_folder: Path) -> str:
    """Run ``command`` (a launcher submitting one submitit job that trains ``run``), send the job its
    preemption signal once its first epoch is saved, wait for the launcher; the job logs."""
    import signal

    launcher = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
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
    logs = "".join(path.read_text() for path in logs_folder.glob("*_log.*"))
    assert "handed to the job's own handler (requeue)" in logs and "Requeued job" in logs
    found = re.search(r"checkpoint \S*iter_(\d+)\.pth written", logs)
    assert found, logs[-3000:]
    assert 3 <= int(found.group(1)) < 3 * EPOCHS  # stopped after a step in the middle of the run
    return logs


def check_run(run: Path, config: Path, overrides: list[str], tmp_path: Path) -> None:
    """Every step ran once, and the weights are those of an uninterrupted run."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["iter"] for r in records if r["type"] == "train"]
    assert len(train_steps) == len(set(train_steps)) == 3 * EPOCHS  # no step lost, none redone
    straight = Trainer.from_config(load_config(config, overrides), tmp_path / "straight", progress=False)
    straight.fit()
    final = load_checkpoint(run / "checkpoints" / "last.pth")
    for key, value in straight.model.state_dict().items():
        assert torch.equal(final["model"][key], value), key


SUBMITIT = ["--launcher", "submitit", "--cluster", "local", "--gpus-per-node", "0", "--cpus-per-task", "1",
            "--timeout", "30", "--no-progress"]


OVERRIDES = [f"solver.epochs={EPOCHS}", "eval.interval=0", "runtime.device=cpu"]


@pytest.mark.parametrize("launcher", ["ablate", "train"])
def test_preempted_job_checkpoints_requeues_and_resumes(
    launcher: str, tiny_config: Callable[..., Path], tmp_path: Path
) -> None:
    """A study run (tools/ablate.py) and a single run (tools/train.py), each submitted as a submitit job."""
    pytest.importorskip("submitit")
    config = tiny_config(name="tiny.yaml")
    if launcher == "ablate":
        work = tmp_path / "study"
        run, logs, overrides = work / "tiny" / "seed0", work / "submitit", [*OVERRIDES, "runtime.seed=0"]
        arguments = ["--configs", str(config), "--seeds", "0", "--work-dir", str(work)]  # --seeds 0: runtime.seed=0
    else:
        run, logs, overrides = tmp_path / "run", tmp_path / "run.submitit", OVERRIDES
        arguments = ["--config", str(config), "--work-dir", str(run)]
    preempt_once([sys.executable, str(REPO / "tools" / f"{launcher}.py"), *arguments, *SUBMITIT, *OVERRIDES],
                 run, logs)
    if launcher == "ablate":
        info = json.loads((run / "run_info.json").read_text())
        assert info["finished"] and info["sessions"] == 2
    assert (run / "eval" / "metrics.json").is_file()
    check_run(run, config, overrides, tmp_path)
