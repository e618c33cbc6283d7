"""Device check: correctness and speed of training and inference on one CUDA device, in about 8 minutes.

    python benchmarks/gpu.py [--device cuda|cuda:N|cpu] [--quick] [--output PATH_STEM] [--budget-s 480]

Writes ``PATH_STEM.json`` and ``PATH_STEM.md`` (default ``benchmarks/gpu_report_<UTC time>``; an
existing report is never overwritten). Sections (see ``benchmarks/gpu_check/``):

- training: 30 steps of ResNet-18 and ResDCN-18 in fp32, bf16 and fp16 (+ GradScaler), channels_last
  on and off: finite losses that go down;
- device equals CPU: ``render_targets``, the heatmap losses and ``decode_detections``;
- torchrun: ``torchrun --nproc_per_node 1`` (nccl; gloo on the CPU) with ``runtime.sync_bn=true``
  trains and evaluates (the trainer joins a process group only when ``WORLD_SIZE > 1``, so a
  two-process gloo run on the CPU checks the process group and SyncBatchNorm); checkpoint across
  devices: a device checkpoint resumes on the CPU and back;
- speed: the focal loss (plain, fused eager, fused compiled), training images/s of the COCO
  ResNet-18 recipe with the real loader vs from memory, and inference images/s at 512 px, batch 1
  and 32 (ResNet-18, ResDCN-18, DLA-34; decode included) next to the paper's figures, compiled
  variants last with the time left; peak device memory.

On the CPU the check runs with one torch thread unless ``--threads`` says otherwise.

``--device cpu --quick`` runs the same code paths on the CPU with tiny sizes in about a minute,
skipping (with the reason in the report) what needs CUDA. Exit status: 0 when no check failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.gpu_check.common import FULL, QUICK, Budget, Check
from benchmarks.gpu_check.correctness import equality_checks, training_checks
from benchmarks.gpu_check.report import markdown
from benchmarks.gpu_check.runs import run_checks
from benchmarks.gpu_check.speed import inference_checks, loss_checks, training_speed_checks
from centernet.utils.errors import one_line_error

DEFAULT_BUDGET_S = 480.0
REPORT_DIR = Path(__file__).resolve().parent


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few steps (a smoke run)")
    parser.add_argument("--output", type=Path, help="report path without suffix (.json and .md are written)")
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S, help="wall-clock budget in seconds")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: 1 with --device cpu, else torch's)"
    )
    return parser.parse_args(argv)


def _environment(device: torch.device) -> dict[str, object]:
    info: dict[str, object] = {
        "device": str(device), "torch": torch.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "cpu_count": os.cpu_count(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update({
            "gpu": props.name, "compute_capability": f"{props.major}.{props.minor}",
            "gpu_memory_gib": round(props.total_memory / 2**30, 1), "cuda": torch.version.cuda,
            "bf16_supported": torch.cuda.is_bf16_supported(),
        })
    return info


def _report_paths(output: Path | None) -> tuple[Path, Path]:
    stem = output or REPORT_DIR / f"gpu_report_{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
    return stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".md")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.stderr.write("gpu check: no CUDA device is available; run with --device cpu for the CPU dry run\n")
        return 1
    json_path, md_path = _report_paths(args.output)
    existing = [str(path) for path in (json_path, md_path) if path.exists()]
    if existing:
        sys.stderr.write(f"gpu check: {', '.join(existing)} already exists; pass another --output\n")
        return 1
    device = torch.device(args.device)
    if device.type == "cuda":
        device = torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())
        torch.cuda.set_device(device)
    threads = args.threads if args.threads is not None else (1 if device.type == "cpu" else 0)
    if threads > 0:
        torch.set_num_threads(threads)  # one thread: multi-threaded CPU timings on shared machines are erratic
    sizes = QUICK if args.quick else FULL
    budget = Budget(args.budget_s)
    sections: dict[str, float] = {}
    checks: list[Check] = []
    with tempfile.TemporaryDirectory(prefix="centernet-gpu-check-") as scratch_dir:
        scratch = Path(scratch_dir)
        steps = [
            ("training", lambda: training_checks(device, sizes, budget)),
            ("device equals CPU", lambda: equality_checks(device, quick=args.quick)),
            ("torchrun and resume", lambda: run_checks(device, scratch, quick=args.quick, budget=budget)),
            ("focal loss speed", lambda: loss_checks(device, budget, quick=args.quick)),
            ("training speed", lambda: training_speed_checks(device, sizes, scratch, budget, quick=args.quick)),
            ("inference speed", lambda: inference_checks(device, sizes, budget, quick=args.quick)),
        ]
        for name, step in steps:
            start = time.perf_counter()
            try:
                checks += step()
            except Exception as error:  # one broken section must not lose the report of the others
                checks.append(Check(name, "section", "fail", f"{type(error).__name__}: {one_line_error(error)}"))
            sections[name] = round(time.perf_counter() - start, 1)
            sys.stderr.write(f"{name}: {sections[name]} s\n")
    payload = {
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick, "budget_s": args.budget_s, "environment": _environment(device),
        "seconds": sections, "checks": [dataclasses.asdict(check) for check in checks],
        "failed": sum(check.status == "fail" for check in checks),
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    md_path.write_text(markdown(payload))
    sys.stdout.write(f"wrote {json_path} and {md_path}: {payload['failed']} failed check(s)\n")
    return 0 if payload["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
