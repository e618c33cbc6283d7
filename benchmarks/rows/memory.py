"""Memory row: peak RSS of the main process and of each loader worker during one short training epoch."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import psutil
import torch

from benchmarks.common import Row, make_row
from benchmarks.context import Context
from benchmarks.trainer_setup import REPO

FULL: dict[str, Any] = {"images": 16, "image_size": (640, 480), "input": 256, "batch": 4}
QUICK: dict[str, Any] = {"images": 4, "image_size": (80, 60), "input": 64, "batch": 2}
WORKERS = 2
POLL_S = 0.05
MIB = 2**20
WORKER_MARK = "spawn_main"  # loader workers are spawned: their command line runs multiprocessing.spawn_main
TIMEOUT_S = 600


def _rss(process: psutil.Process) -> int:
    try:
        return int(process.memory_info().rss)
    except psutil.Error:
        return 0


def _is_worker(process: psutil.Process) -> bool:
    """A spawned loader worker. Only direct children of the training process are asked: a worker that forks
    (a library running a subprocess) briefly has a child with the worker's command line, which is not a worker."""
    try:
        return any(WORKER_MARK in part for part in process.cmdline())
    except psutil.Error:
        return False


def run(ctx: Context) -> list[Row]:
    """Train one short epoch with 2 loader workers in a fresh process, polling RSS every 50 ms."""
    p = QUICK if ctx.quick else FULL
    width, height = p["image_size"]
    params = (p["images"], width, height, p["input"], p["batch"], WORKERS, torch.get_num_threads())
    command = [sys.executable, "-m", "benchmarks.rows.memory_child", str(ctx.scratch / "memory"), *map(str, params)]
    main = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watched = psutil.Process(main.pid)
    peaks: dict[int, int] = {}
    workers: set[int] = set()
    deadline = time.monotonic() + TIMEOUT_S
    while main.poll() is None and time.monotonic() < deadline:
        peaks[main.pid] = max(peaks.get(main.pid, 0), _rss(watched))
        try:
            children = watched.children(recursive=False)
        except psutil.Error:
            children = []
        for child in children:
            if child.pid in workers or _is_worker(child):
                workers.add(child.pid)
                peaks[child.pid] = max(peaks.get(child.pid, 0), _rss(child))
        time.sleep(POLL_S)
    _, stderr = main.communicate(timeout=TIMEOUT_S)
    if main.returncode != 0:
        raise RuntimeError(f"the training child failed ({main.returncode}): {stderr.strip().splitlines()[-1:]}")
    worker_peaks = sorted((peaks[pid] / MIB for pid in workers), reverse=True)
    if not worker_peaks:
        raise RuntimeError("no loader worker process was seen during the training run")
    main_peak = peaks[main.pid] / MIB
    return [
        make_row(
            f"memory, 1 training epoch, {p['images']} images, {p['input']}px, B={p['batch']}, {WORKERS} workers",
            "peak RSS, largest loader worker",
            "peak RSS, main process",
            "MiB",
            worker_peaks[0],
            main_peak,
            "report",
            worker_peaks_mib=[round(v, 1) for v in worker_peaks],
            main_peak_mib=round(main_peak, 1),
        )
    ]
