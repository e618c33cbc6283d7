"""Speed and memory benchmarks: our code against reference implementations, side by side in one process.

Absolute times on shared machines are noise, so every timed row runs two callables on the same inputs,
interleaving their repetitions, and reports the ratio of their medians (``ours / reference``) next
to the absolute figures. Rows live in ``benchmarks/rows/``, the baselines in ``benchmarks/reference/``.

    python benchmarks/run.py [--quick] [--threads N] [--rows loader,targets,...] [--out benchmarks/results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.common import Row
from benchmarks.context import Context
from benchmarks.rows import evaluation, ghm, inference, loader, memory, targets, train_step, ttfnet_step

OUT_DEFAULT = Path(__file__).resolve().parent / "results.json"
DEFAULT_THREADS = 1  # per-core figures; the shared 2-core machines make multi-threaded timings erratic

#: Row groups in table order: name -> ``run(ctx) -> list[Row]``.
ROWS: dict[str, Callable[[Context], list[Row]]] = {
    "loader": loader.run,
    "targets": targets.run,
    "train_step": train_step.run,
    "ttfnet_step": ttfnet_step.run,
    "inference": inference.run,
    "evaluation": evaluation.run,
    "memory": memory.run,
    "ghm": ghm.run,
}


def _value(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def markdown(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| row | ours | reference | unit | ours | reference | ratio | target | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    marks = {True: "yes", False: "NO", None: "-"}
    lines += [
        f"| {r.name} | {r.ours} | {r.reference} | {r.unit} | {_value(r.ours_value)} | {_value(r.reference_value)} "
        f"| {r.ratio:.3f} | {r.target} | {marks[r.met]} |"
        for r in rows
    ]
    return "\n".join(lines)


def machine_info() -> dict[str, object]:
    """Where the figures were measured."""
    model = platform.processor()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        names = [line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")]
        model = names[0] if names else model
    except OSError:
        pass
    return {
        "cpu": model,
        "logical_cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repetitions (CI smoke run)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="torch intra-op threads (default 1)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {list(ROWS)}")
    parser.add_argument("--out", type=Path, default=OUT_DEFAULT, help="where to write the JSON results")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.rows.split(",") if name.strip()]
    unknown = sorted(set(names) - set(ROWS))
    if unknown:
        parser.error(f"unknown rows {unknown}; valid: {list(ROWS)}")
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    rows: list[Row] = []
    seconds: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="centernet-bench-") as scratch:
            ctx = Context(quick=args.quick, scratch=Path(scratch))
            for name in names:
                start = time.perf_counter()
                rows += ROWS[name](ctx)
                seconds[name] = round(time.perf_counter() - start, 1)
                sys.stderr.write(f"{name}: {seconds[name]} s\n")
        table = markdown(rows)
        sys.stdout.write(table + "\n")
        payload = {
            "quick": args.quick, "machine": machine_info(), "seconds": seconds, "rows": [asdict(r) for r in rows]
        }
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
    finally:
        torch.set_num_threads(threads_before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
