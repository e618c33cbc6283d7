"""Whole training runs through ``tools/train.py``: ``torchrun`` with ``runtime.sync_bn``, and resuming across devices.

All runs train the tiny ResNet-18 on a generated shapes set (8 training / 4 validation images, 64 px) and
evaluate after every epoch. The resume chain: the device run of the ``torchrun`` check writes
``last.pth`` (epoch 1); it is resumed on the CPU for epoch 2, whose checkpoint is resumed on the device
for epoch 3.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.gpu_check.common import REPO, Budget, Check, skipped
from centernet.engine.checkpoint import load_checkpoint

SECTION_DDP = "torchrun"
SECTION_RESUME = "checkpoint across devices"
RUN_TIMEOUT_S = 300
OUTPUT_TAIL = 600  # characters of a failed run's output kept in the report
TINY_CONFIG = """\
_base_: {base}
data:
  train: {{type: coco, ann_file: {root}/annotations/instances_train.json, img_dir: {root}/train}}
  val: {{type: coco, ann_file: {root}/annotations/instances_val.json, img_dir: {root}/val}}
  input_size: [64, 64]
  batch_size: 4
  workers: 0
model:
  neck: {{channels: [32, 32, 32]}}
  head: {{head_conv: 16}}
solver: {{epochs: 1, lr: 1.0e-3, lr_steps: [10], warmup_iters: 2, min_iters: 0}}
eval: {{interval: 1}}
runtime: {{log_interval: 1, threads: 1, amp: "off", channels_last: false}}
"""


def write_tiny_run(folder: Path, num_train: int = 8) -> Path:
    """Generate the shapes set (``num_train`` training images) under ``folder/data`` and return the path of the
    tiny experiment YAML."""
    spec = importlib.util.spec_from_file_location("make_shapes", REPO / "datasets" / "make_shapes.py")
    assert spec is not None and spec.loader is not None
    make_shapes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_shapes)
    data = folder / "data"
    make_shapes.generate_shapes_dataset(data, num_train=num_train, num_val=4, image_size=(64, 64), seed=3)
    config = folder / "tiny.yaml"
    config.write_text(TINY_CONFIG.format(base=REPO / "configs" / "shapes_resnet18.yaml", root=data))
    return config


def _train(arguments: list[str], *, torchrun_procs: int | None = None) -> tuple[int, str, float]:
    """Run ``tools/train.py`` (under ``torchrun`` when ``torchrun_procs``); returns ``(rc, output, seconds)``."""
    launcher = [sys.executable]
    if torchrun_procs is not None:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun_procs}"]
    command = [*launcher, str(REPO / "tools" / "train.py"), "--no-progress", *arguments]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
        return done.returncode, done.stdout + done.stderr, time.perf_counter() - start
    except subprocess.TimeoutExpired as error:
        output = (error.stdout or b"").decode() if isinstance(error.stdout, bytes) else (error.stdout or "")
        return 124, output + f"\ntimed out after {RUN_TIMEOUT_S} s", time.perf_counter() - start


def _run_check(section: str, name: str, rc: int, output: str, seconds: float, work: Path, epoch: int) -> Check:
    """Pass when the run exited 0, evaluated (``eval/metrics.json``) and saved epoch ``epoch`` in ``last.pth``."""
    last = work / "checkpoints" / "last.pth"
    saved_epoch = load_checkpoint(last, map_location="cpu").get("epoch") if rc == 0 and last.is_file() else None
    evaluated = (work / "eval" / "metrics.json").is_file()
    backend = re.search(r"backend (\w+)", output)
    figures = {
        "seconds": round(seconds, 1), "exit_code": rc, "evaluated": evaluated, "saved_epoch": saved_epoch,
        # the trainer joins a process group (and converts to SyncBatchNorm) only when WORLD_SIZE > 1
        "process_group": backend.group(1) if backend else "none (WORLD_SIZE=1: the trainer runs single-process)",
    }
    if rc == 0 and evaluated and saved_epoch == epoch:
        return Check(section, name, "pass", "", figures)
    reason = f"exit {rc}, evaluated={evaluated}, saved epoch {saved_epoch} (expected {epoch}): {output[-OUTPUT_TAIL:]}"
    return Check(section, name, "fail", reason, figures)


def run_checks(device: torch.device, scratch: Path, *, quick: bool, budget: Budget) -> list[Check]:
    """The ``torchrun`` checks and the cross-device resume chain."""
    config = write_tiny_run(scratch / "tiny")
    device_arg = f"runtime.device={device.type}"
    checks: list[Check] = []
    backend = "nccl" if device.type == "cuda" else "gloo"
    work = scratch / "tiny" / "device_run"
    rc, output, seconds = _train(
        ["--config", str(config), "--work-dir", str(work), device_arg, "runtime.sync_bn=true"], torchrun_procs=1
    )
    name = f"torchrun --nproc_per_node 1 ({backend}), runtime.sync_bn=true, {device.type}: trains and evaluates"
    checks.append(_run_check(SECTION_DDP, name, rc, output, seconds, work, epoch=1))
    name = "torchrun --nproc_per_node 2 (gloo, CPU), runtime.sync_bn=true: a real process group and SyncBatchNorm"
    if quick:
        checks.append(skipped(SECTION_DDP, name, "--quick: one process only"))
    elif not budget.allows(90):
        checks.append(skipped(SECTION_DDP, name, "time budget spent"))
    else:
        work2 = scratch / "tiny" / "gloo_two_procs"
        rc2, output2, seconds2 = _train(
            ["--config", str(config), "--work-dir", str(work2), "runtime.device=cpu", "runtime.sync_bn=true"],
            torchrun_procs=2,
        )
        checks.append(_run_check(SECTION_DDP, name, rc2, output2, seconds2, work2, epoch=1))
    chain = [("device -> CPU", "cpu", 2), ("CPU -> device", device.type, 3)]
    for step, (name, target, epoch) in enumerate(chain):
        if checks[0].status != "pass":
            checks.append(skipped(SECTION_RESUME, name, "the device run of the torchrun check failed"))
            continue
        if device.type == "cpu" and step > 0:
            checks.append(skipped(SECTION_RESUME, name, "needs CUDA: the device is the CPU (CPU resume checked)"))
            continue
        if not budget.allows(60):
            checks.append(skipped(SECTION_RESUME, name, "time budget spent"))
            continue
        rc, output, seconds = _train(
            ["--config", str(config), "--work-dir", str(work), "--resume", f"runtime.device={target}",
             f"solver.epochs={epoch}"]
        )
        checks.append(_run_check(SECTION_RESUME, name, rc, output, seconds, work, epoch=epoch))
    return checks
