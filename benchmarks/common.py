"""What every benchmark row shares: the result record, interleaved timing and a thread-count guard."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import cv2
import torch

MS_PER_S = 1000.0


@dataclass
class Row:
    """One benchmark row: ``ratio = ours_value / reference_value`` (units in ``unit``).

    Attributes:
        name: what is measured, with the sizes.
        ours: our implementation.
        reference: what it is compared with.
        unit: unit of the two values (``ms``, ``samples/s``, ``GFLOP/s``, ``MiB`` ...).
        ours_value: our figure (a median for timings).
        reference_value: the reference figure.
        ratio: ``ours_value / reference_value``.
        target: the goal on ``ratio`` (``"<= 1.10"``, ``">= 3"``) or ``"report"``.
        met: whether ``ratio`` meets ``target`` (None for report-only rows).
        details: further absolute figures of the row.
    """

    name: str
    ours: str
    reference: str
    unit: str
    ours_value: float
    reference_value: float
    ratio: float
    target: str
    met: bool | None
    details: dict[str, Any] = field(default_factory=dict)


def make_row(
    name: str, ours: str, reference: str, unit: str, ours_value: float, reference_value: float, target: str,
    **details: Any,
) -> Row:
    """Build a :class:`Row`, computing the ratio and whether it meets ``target`` (``"<= x"`` / ``">= x"``)."""
    ratio = ours_value / reference_value
    met: bool | None = None
    if target.startswith("<="):
        met = ratio <= float(target[2:])
    elif target.startswith(">="):
        met = ratio >= float(target[2:])
    return Row(name, ours, reference, unit, ours_value, reference_value, ratio, target, met, dict(details))


def interleaved_times(
    callables: dict[str, Callable[[], object]], repeats: int, *, warmup: bool = True
) -> dict[str, list[float]]:
    """Milliseconds of each call, the callables run alternately ``repeats`` times (after one warm-up each)."""
    for fn in callables.values() if warmup else ():
        fn()
    times: dict[str, list[float]] = {name: [] for name in callables}
    for _ in range(repeats):
        for name, fn in callables.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * MS_PER_S)
    return times


def interleaved_medians(
    ours: Callable[[], object], reference: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median milliseconds of ``ours`` and ``reference``, run alternately (see :func:`interleaved_times`)."""
    times = interleaved_times({"ours": ours, "reference": reference}, repeats)
    return statistics.median(times["ours"]), statistics.median(times["reference"])


@contextlib.contextmanager
def threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch and OpenCV threads (one core's worth when ``count == 1``)."""
    torch_before, cv2_before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(count)
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        torch.set_num_threads(torch_before)
        cv2.setNumThreads(cv2_before)


def thread_label() -> str:
    """``"1 thread"`` / ``"N threads"`` for the current torch intra-op thread count."""
    count = torch.get_num_threads()
    return f"{count} thread" + ("" if count == 1 else "s")
