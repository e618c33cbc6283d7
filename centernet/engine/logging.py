"""Run logging: console/file logs (stdlib), ``metrics.jsonl`` and TensorBoard scalars."""

from __future__ import annotations

import itertools
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TqdmHandler(logging.StreamHandler):
    """Console handler that writes through ``tqdm.write`` so progress bars stay intact."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def setup_logging(work_dir: Path | None = None, *, level: int = logging.INFO) -> None:
    """Send the ``centernet`` loggers to the console (``level``) and to ``work_dir/run.log`` (everything)."""
    root = logging.getLogger("centernet")
    root.setLevel(logging.DEBUG)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S")
    console = TqdmHandler()
    console.setLevel(level)
    console.setFormatter(formatter)
    root.addHandler(console)
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(work_dir / "run.log")
        file_handler.setLevel(logging.DEBUG)  # tracebacks of reported errors land here
        file_handler.setFormatter(formatter)
        root.addHandler(file_handler)
    root.propagate = False


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


class MetricsLogger:
    """Writes one JSON object per event to ``metrics.jsonl`` and scalars to TensorBoard (``tb/``).

    Args:
        work_dir: the run folder.
        tensorboard: also write TensorBoard event files.
    """

    def __init__(self, work_dir: Path, *, tensorboard: bool = True) -> None:
        work_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl_path = work_dir / "metrics.jsonl"
        self._jsonl = self.jsonl_path.open("a")
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(work_dir / "tb"))

    @property
    def writer(self) -> Any:
        """The TensorBoard ``SummaryWriter`` (None when TensorBoard is off)."""
        return self._tb

    def log(self, record: dict[str, Any], *, step: int, prefix: str) -> None:
        """Append ``record`` to the JSONL file and its numeric entries as ``prefix/<key>`` scalars."""
        self._jsonl.write(json.dumps(_json_safe(record)) + "\n")
        self._jsonl.flush()
        if self._tb is None:
            return
        for key, value in record.items():
            if key in ("type", "epoch", "iter") or isinstance(value, bool):
                continue
            if isinstance(value, int | float) and math.isfinite(value):
                self._tb.add_scalar(f"{prefix}/{key}", value, global_step=step)
        self._tb.flush()

    def log_histogram(self, tag: str, edges: list[float], counts: list[int], *, step: int) -> None:
        """Write a pre-binned histogram (``len(edges) == len(counts) + 1``) to TensorBoard."""
        if self._tb is None or sum(counts) == 0:
            return
        centers = [(lo + hi) / 2 for lo, hi in itertools.pairwise(edges)]
        total = sum(counts)
        self._tb.add_histogram_raw(
            tag,
            min=edges[0],
            max=edges[-1],
            num=total,
            sum=sum(c * n for c, n in zip(centers, counts, strict=True)),
            sum_squares=sum(c * c * n for c, n in zip(centers, counts, strict=True)),
            bucket_limits=edges[1:],
            bucket_counts=counts,
            global_step=step,
        )
        self._tb.flush()

    def close(self) -> None:
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
