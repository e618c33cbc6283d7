"""Speed and memory benchmarks: our code against reference implementations, side by side in one process.

Absolute times on shared machines are noise, so every timed row runs two callables on the same inputs,
interleaving their repetitions, and reports the ratio of their medians (``ours / reference``) next
to the absolute figures. Rows live in ``benchmarks/rows/``, the baselines in ``benchmarks/reference/``.

    python benchmarks/run.py [--quick] [--threads N] [--rows loader,targets,...] [--out FILE | --update-tracked]

Results go to work_dirs/benchmarks/results[_quick]_<YYYYmmdd-HHMMSS>.json (a new file per run) unless --out
names a file; --update-tracked replaces the committed benchmarks/results.json (never with --quick, whose
figures are meaningless). See docs/performance.md.
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
from benchmarks.rows import (
    end_to_end,
    evaluation,
    focal,
    ghm,
    inference,
    int8,
    loader,
    memory,
    sliced,
    targets,
    train_step,
    ttfnet_step,
)

TRACKED_RESULTS = Path(__file__).resolve().parent / "results.json"
RESULTS_DIR = Path(__file__).resolve().parents[1] / "work_dirs" / "benchmarks"
DEFAULT_THREADS = 1  # per-core figures; the shared 2-core machines make multi-threaded timings erratic

#: Row groups in table order: name -> ``run(ctx) -> list[Row]``.
ROWS: dict[str, Callable[[Context], list[Row]]] = {
    "loader": loader.run,
    "targets": targets.run,
    "train_step": train_step.run,
    "focal": focal.run,
    "ttfnet_step": ttfnet_step.run,
    "inference": inference.run,
    "end_to_end": end_to_end.run,
    "evaluation": evaluation.run,
    "memory": memory.run,
    "ghm": ghm.run,
    "sliced": sliced.run,
    "int8": int8.run,
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


def output_path(out: Path | None, *, quick: bool, update_tracked: bool) -> Path:
    """``--out``, the tracked results file (``--update-tracked``), or a new timestamped file under RESULTS_DIR."""
    if out is not None:
        return out
    if update_tracked:
        return TRACKED_RESULTS
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return RESULTS_DIR / f"results{'_quick' if quick else ''}_{stamp}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repetitions (CI smoke run)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="torch intra-op threads (default 1)")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {list(ROWS)}")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--out", type=Path, help="where to write the JSON results (default: a new file in "
                        "work_dirs/benchmarks/)")
    target.add_argument("--update-tracked", action="store_true", help=f"replace the committed {TRACKED_RESULTS.name}")
    args = parser.parse_args(argv)
    if args.update_tracked and args.quick:
        parser.error(f"--quick figures are meaningless; --update-tracked would replace {TRACKED_RESULTS} with them")
    out = output_path(args.out, quick=args.quick, update_tracked=args.update_tracked)
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
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(payload, indent=2) + "\n")
        sys.stderr.write(f"results: {out}\n")
    finally:
        torch.set_num_threads(threads_before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
