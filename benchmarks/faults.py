"""Fault injection: a small real training run hit by K faults of each kind, resumed as a user would.

Each trial trains the tiny shapes recipe (4 epochs x 3 steps, a checkpoint every 2 steps and at epoch ends,
evaluations after epochs 2 and 4) in a child process and injects one fault at a seeded random point:

- ``sigterm``: SIGTERM during a step (what a scheduler sends); resumed with ``--auto-resume``.
- ``sigkill``: SIGKILL of the whole process during a step; resumed with ``--auto-resume``.
- ``sigkill_rank``: SIGKILL of one of the 2 ranks of ``torchrun --max-restarts 3``; the group restarts itself.
- ``half_write``: SIGKILL while a checkpoint file is half written; resumed with ``--auto-resume``.
- ``disk_full``: the checkpoint folder (a tmpfs made for the trial) fills up during a step; the save fails with
  one error line; space is freed and the run resumed with ``--auto-resume``.
- ``corrupt_newest``: SIGKILL, then the newest checkpoint truncated; resumed with ``--auto-resume``.

Reported per kind: faults survived (the run finished), steps redone per fault (mean, max: training steps run
twice), the final weights' largest difference from an uninterrupted run, and results lost (evaluations of the
uninterrupted run missing from the resumed run's ``metrics.jsonl`` or ``eval/metrics.json``; must be 0).

    python benchmarks/faults.py [--faults 20] [--kinds sigterm,sigkill,...] [--seed 0] [--work-dir DIR]

Appends each trial to ``<work-dir>/trials.jsonl`` (so that a long run can be split over several invocations:
``--all-recorded`` reports them all), writes ``<work-dir>/faults_<YYYYmmdd-HHMMSS>.json`` and prints a Markdown
table (docs/failures.md).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make the repository root importable
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from benchmarks.gpu_check.runs import write_tiny_run  # noqa: E402
from centernet.engine.checkpoint import load_checkpoint  # noqa: E402

KINDS = ("sigterm", "sigkill", "sigkill_rank", "half_write", "disk_full", "corrupt_newest")
STEPS = 12  # 4 epochs x 3 steps of 4 images
OVERRIDES = ["solver.epochs=4", "eval.interval=2", "runtime.checkpoint_interval=2", "runtime.keep_checkpoints=3",
             "solver.ema=true", "solver.ema_warmup_iters=2", "runtime.device=cpu"]
# 2 ranks x 2 = the same global batch of 4; a restarted group that cannot form gives up after a minute and is
# restarted again (runtime.dist_timeout_min), instead of waiting torch's default half hour
DDP = ["data.batch_size=2", "runtime.dist_timeout_min=1"]
TIMEOUT_S = 300  # a trial still running after this counts as not survived
TRIALS_FILE = "trials.jsonl"
SPARE_BYTES = 2**20  # left free when the disk "fills": the logs still fit, a checkpoint does not
TMPFS_BYTES = 2 * 2**30  # room for the checkpoints of a trial (about 180 MB each: weights, Adam, EMA)

# Injected by the trial: pauses the chosen rank before a step, or in the middle of writing a checkpoint, and
# waits to be killed or released (the parent writes <marker>.go). Only the first attempt of a group pauses.
WRAPPER = """
import io, os, sys, time
from pathlib import Path
import torch
from centernet.engine.trainer import Trainer

marker = Path(os.environ["FAULT_MARKER"])
first = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
rank = int(os.environ.get("RANK", "0"))
pause_step, pause_save = int(os.environ.get("FAULT_STEP", "0")), int(os.environ.get("FAULT_SAVE", "0"))

def pause():
    marker.write_text(str(os.getpid()))
    while not Path(str(marker) + ".go").exists():
        time.sleep(0.02)

healthy_step, healthy_save, saves = Trainer.train_step, torch.save, [0]

def train_step(self, batch):
    if first and rank == int(os.environ.get("FAULT_RANK", "0")) and self.iteration + 1 == pause_step:
        pause()
    return healthy_step(self, batch)

def save(obj, handle, *args, **kwargs):
    saves[0] += 1
    if first and saves[0] == pause_save and hasattr(handle, "fileno"):
        buffer = io.BytesIO()
        healthy_save(obj, buffer)
        data = buffer.getvalue()
        handle.write(data[: len(data) // 2])  # half of the checkpoint reaches the disk, then the process dies
        handle.flush()
        os.fsync(handle.fileno())
        pause()
    return healthy_save(obj, handle, *args, **kwargs)

Trainer.train_step, torch.save = train_step, save
sys.argv = ["train.py", *sys.argv[1:]]
exec(compile(Path(os.environ["FAULT_TRAIN"]).read_text(), "train.py", "exec"), {"__name__": "__main__"})
"""


@dataclass
class Trial:
    """One fault and what it cost."""

    kind: str
    point: int
    survived: bool = False
    steps_redone: int = 0
    max_weight_diff: float = float("nan")
    results_lost: int = 0
    exit_codes: list[int] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""


class Bench:
    """The data, config, wrapper and uninterrupted reference runs shared by the trials."""

    def __init__(self, root: Path) -> None:
        self.root = root
        config = root / "tiny.yaml"
        # 12 images of 64 px, batch 4: the STEPS of 4 epochs x 3 steps (the run of the GPU check, longer)
        self.config = config if config.exists() else write_tiny_run(root, num_train=12)
        self.wrapper = root / "fault_wrapper.py"
        self.wrapper.write_text(WRAPPER)
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
                    "FAULT_TRAIN": str(REPO / "tools" / "train.py")}
        self.reference = {ddp: self._reference(ddp) for ddp in (False, True)}

    def command(self, work_dir: Path, *, ddp: bool, wrapper: bool, extra: tuple[str, ...] = ()) -> list[str]:
        script = str(self.wrapper if wrapper else REPO / "tools" / "train.py")
        args = ["--config", str(self.config), "--work-dir", str(work_dir), "--no-progress", *OVERRIDES,
                *(DDP if ddp else []), *extra]
        if ddp:
            return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                    "--max-restarts=3", script, *args]
        return [sys.executable, script, *args]

    def _reference(self, ddp: bool) -> dict[str, object]:
        work_dir = self.root / f"reference{'_ddp' if ddp else ''}"
        if not (work_dir / "checkpoints" / "last.pth").exists():
            shutil.rmtree(work_dir, ignore_errors=True)
            subprocess.run(self.command(work_dir, ddp=ddp, wrapper=False), env=self.env, check=True,
                           capture_output=True, timeout=TIMEOUT_S, cwd=self.root)
        return {"weights": load_checkpoint(work_dir / "checkpoints" / "last.pth")["model"],
                "evals": evaluations(work_dir)}


def evaluations(work_dir: Path) -> set[int]:
    """Epochs whose evaluation is in ``metrics.jsonl`` (once the final ``eval/metrics.json`` exists too)."""
    records = [json.loads(line) for line in (work_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    epochs = {int(r["epoch"]) for r in records if r.get("type") == "val"}
    return epochs if (work_dir / "eval" / "metrics.json").is_file() else set()


def steps_run(work_dir: Path) -> int:
    """Training steps run in all the processes of a run (every step logs one record: ``log_interval`` 1)."""
    lines = (work_dir / "metrics.jsonl").read_text().splitlines()
    return sum(json.loads(line).get("type") == "train" for line in lines if line.strip())


def wait_for(marker: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not marker.exists():
        if process.poll() is not None:
            raise RuntimeError(f"the run ended before the fault point: {process.stderr.read()[-2000:]}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            raise RuntimeError("the run never reached the fault point")
        time.sleep(0.05)
    time.sleep(0.1)  # the pid is written just before the wait starts


def run_trial(bench: Bench, kind: str, point: int, work_dir: Path) -> Trial:
    """Inject one fault at ``point`` (a step, or the n-th checkpoint file written), then resume as a user would."""
    trial = Trial(kind, point)
    started = time.perf_counter()
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    marker = work_dir.parent / f"{work_dir.name}.pid"
    for stale in (marker, Path(f"{marker}.go")):
        stale.unlink(missing_ok=True)
    ddp = kind == "sigkill_rank"
    env = {**bench.env, "FAULT_MARKER": str(marker),
           "FAULT_STEP": str(point if kind != "half_write" else 0),
           "FAULT_SAVE": str(point if kind == "half_write" else 0), "FAULT_RANK": "1" if ddp else "0"}
    # the run folder inside a small file system (not its mount point: --auto-resume may move a run folder aside)
    mounted = kind == "disk_full" and mount_tmpfs(work_dir)
    volume, work_dir = work_dir, work_dir / "run" if kind == "disk_full" else work_dir
    child: subprocess.Popen[str] | None = None
    try:
        child = subprocess.Popen(bench.command(work_dir, ddp=ddp, wrapper=True), env=env, cwd=bench.root,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                 start_new_session=True)  # its own process group: torchrun's workers included
        wait_for(marker, child)
        pid = int(marker.read_text())
        if kind == "sigterm":
            os.kill(pid, signal.SIGTERM)
        elif kind == "disk_full":
            fill(volume)
        else:
            os.kill(pid, signal.SIGKILL)
        Path(f"{marker}.go").write_text("go")
        _, stderr = child.communicate(timeout=TIMEOUT_S)
        trial.exit_codes.append(child.returncode)
        if ddp and child.returncode != 0:  # the group did not come back: keep why
            trial.error = " | ".join(line for line in stderr.splitlines() if "ERROR" in line)[-600:]
        if kind == "disk_full":
            (volume / "filler").unlink()  # the user frees space
        if kind == "corrupt_newest":
            newest = work_dir / "checkpoints" / "last.pth"  # a hard link of the newest iter_*.pth: both cut
            newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2]) if newest.exists() else None
        if not ddp:
            resumed = subprocess.run(bench.command(work_dir, ddp=False, wrapper=False, extra=("--auto-resume",)),
                                     env=bench.env, cwd=bench.root, capture_output=True, text=True, timeout=TIMEOUT_S)
            trial.exit_codes.append(resumed.returncode)
        measure(bench, trial, work_dir, ddp)
    except (subprocess.TimeoutExpired, RuntimeError) as error:  # not survived; say why
        trial.error = str(error).splitlines()[0][:300]
    finally:
        if child is not None:  # leave no process behind (torchrun's workers are in the child's group)
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            child.wait()
        if mounted:
            subprocess.run(["umount", str(volume)], check=False)
        for folder in (volume, *volume.parent.glob(f"{volume.name}.old-*")):  # 100s of MB per trial
            shutil.rmtree(folder, ignore_errors=True)
    trial.seconds = time.perf_counter() - started
    return trial


def measure(bench: Bench, trial: Trial, work_dir: Path, ddp: bool) -> None:
    last = work_dir / "checkpoints" / "last.pth"
    state = load_checkpoint(last) if last.exists() else {}
    reference = bench.reference[ddp]
    trial.survived = state.get("iteration") == STEPS and (work_dir / "eval" / "metrics.json").is_file()
    trial.steps_redone = steps_run(work_dir) - STEPS
    if "model" in state:
        trial.max_weight_diff = max(float((state["model"][k].float() - v.float()).abs().max())  # type: ignore[union-attr]
                                    for k, v in reference["weights"].items())  # type: ignore[union-attr]
    trial.results_lost = len(reference["evals"] - evaluations(work_dir))  # type: ignore[operator]


def mount_tmpfs(folder: Path) -> bool:
    """A small tmpfs at ``folder`` (root only; ``folder`` must be empty); raises when it cannot be made."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(folder)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"disk_full needs a tmpfs (root): mount failed: {done.stderr.strip()}")
    return True


def fill(folder: Path) -> None:
    """Fill the file system of ``folder`` but for ``SPARE_BYTES``: the logs still fit, the next checkpoint does not."""
    free = shutil.disk_usage(folder).free
    with open(folder / "filler", "wb") as handle:
        handle.write(b"\0" * max(0, free - SPARE_BYTES))


def fault_points(kind: str, count: int, rng: random.Random) -> list[int]:
    """Seeded fault points: a step 1..STEPS (a checkpoint write 1..8 for half_write; steps 2.. for disk_full)."""
    low, high = {"half_write": (1, 8), "disk_full": (2, STEPS)}.get(kind, (1, STEPS))
    return [rng.randint(low, high) for _ in range(count)]


def summarise(trials: list[Trial]) -> dict[str, dict[str, float]]:
    summary = {}
    for kind in dict.fromkeys(t.kind for t in trials):
        rows = [t for t in trials if t.kind == kind]
        redone = [t.steps_redone for t in rows]
        summary[kind] = {"faults": len(rows), "survived": sum(t.survived for t in rows),
                         "steps_redone_mean": statistics.fmean(redone), "steps_redone_max": max(redone),
                         "max_weight_diff": max(t.max_weight_diff for t in rows),
                         "results_lost": sum(t.results_lost for t in rows)}
    return summary


def markdown(summary: dict[str, dict[str, float]]) -> str:
    lines = ["| fault | survived | steps redone (mean / max) | max \\|Δ weight\\| | results lost |",
             "|---|---|---|---|---|"]
    lines += [f"| {kind} | {s['survived']:.0f} / {s['faults']:.0f} | {s['steps_redone_mean']:.2f} / "
              f"{s['steps_redone_max']:.0f} | {s['max_weight_diff']:.3g} | {s['results_lost']:.0f} |"
              for kind, s in summary.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="faults.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--faults", type=int, default=20, help="faults of each kind")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, from {', '.join(KINDS)}")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault points")
    parser.add_argument("--work-dir", type=Path, default=REPO / "work_dirs" / "faults")
    parser.add_argument("--all-recorded", action="store_true",
                        help=f"report every trial in <work-dir>/{TRIALS_FILE}, not only the kinds of this run")
    args = parser.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        parser.error(f"unknown fault kinds {unknown}; choose from {', '.join(KINDS)}")
    torch.set_num_threads(1)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    bench = Bench(args.work_dir)
    rng = random.Random(args.seed)
    records = args.work_dir / TRIALS_FILE  # one line per trial, kept across invocations (a long run can be split)
    for kind in kinds:
        for index, point in enumerate(fault_points(kind, args.faults, rng)):
            trial = run_trial(bench, kind, point, args.work_dir / "trials" / f"{kind}_{index}")
            with records.open("a") as handle:
                handle.write(json.dumps(asdict(trial)) + "\n")
            print(f"{kind} #{index} at {point}: {asdict(trial)}", flush=True)
    trials = [Trial(**json.loads(line)) for line in records.read_text().splitlines() if line.strip()]
    summary = summarise([t for t in trials if t.kind in kinds or args.all_recorded])
    report = args.work_dir / f"faults_{time.strftime('%Y%m%d-%H%M%S')}.json"
    report.write_text(json.dumps({"summary": summary, "trials": [asdict(t) for t in trials]}, indent=1))
    print(markdown(summary))
    print(f"-> {report}")
    return 0 if all(s["results_lost"] == 0 and s["survived"] == s["faults"] for s in summary.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
