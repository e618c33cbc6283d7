"""Run an ablation study: train + evaluate every config x seed, then compare them in a table and a plot.

python tools/ablate.py --configs configs/ablations/*.yaml --seeds 0 1 2 [--work-dir DIR] [--no-progress] [KEY=VALUE ...]

Runs go one after another into <work-dir>/<config stem>/seed<seed>/ with runtime.seed=<seed> and the
overrides. Rerunning the same command skips finished runs and resumes interrupted ones. The results
land in <work-dir>/ablation.csv (one row per run), ablation.md (mean ± std over seeds per config) and
ablation.png. A run that fails (e.g. a diverging loss) is reported and the others still run.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from centernet.ablation import (
    CSV_FILE,
    MARKDOWN_FILE,
    PLOT_FILE,
    RUNTIME_ONLY_KEYS,
    RunSpec,
    RunStatus,
    collect_run,
    config_differences,
    record_run_time,
    run_status,
    write_reports,
)
from centernet.cli import (
    EXIT_ERROR,
    EXIT_OK,
    USER_ERRORS,
    ToolArgumentParser,
    default_argument_parser,
    report_error,
    run_tool,
    setup_tool_logging,
)
from centernet.config import Config, config_to_dict, load_config
from centernet.engine.logging import LOG_FORMAT
from centernet.engine.run_dir import complete_run
from centernet.engine.trainer import Trainer

logger = logging.getLogger("centernet.tools.ablate")

DEFAULT_WORK_DIR = Path("work_dirs") / "ablation"
SEED_KEY = "runtime.seed"


def build_parser() -> ToolArgumentParser:
    parser = default_argument_parser(__doc__, config="none")
    parser.add_argument("--configs", nargs="+", required=True, metavar="CFG", help="experiment YAML files")
    parser.add_argument("--seeds", nargs="+", required=True, metavar="SEED", help="values of runtime.seed")
    parser.add_argument("--work-dir", default=str(DEFAULT_WORK_DIR), help=f"study folder (default: {DEFAULT_WORK_DIR})")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_tool_args(argv)  # KEY=VALUE words after --configs / --seeds go to the overrides
    try:
        args.seeds = [int(item) for item in args.seeds]
    except ValueError:
        parser.error(f"--seeds expects integers, got {args.seeds}")
    return args


def plan_runs(
    configs: list[str], seeds: list[int], overrides: list[str], work_dir: Path
) -> list[tuple[RunSpec, Config, RunStatus]]:
    """Load every config x seed and inspect its run folder before anything trains.

    Raises:
        ValueError: duplicate config stems or seeds, an override of ``runtime.seed``, or a run folder
            whose checkpoint was trained with a different config.
        ConfigError, FileNotFoundError: a config does not load.
    """
    stems: dict[str, str] = {}
    for config in configs:
        stem = Path(config).stem
        if stem in stems:
            raise ValueError(
                f"configs {stems[stem]} and {config} share the name {stem!r} (their runs would share "
                f"{work_dir / stem}); rename one"
            )
        stems[stem] = config
    duplicates = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if duplicates:
        raise ValueError(f"--seeds lists {duplicates} more than once")
    if any(item.partition("=")[0].strip() == SEED_KEY for item in overrides):
        raise ValueError(f"{SEED_KEY} is set by --seeds; remove the {SEED_KEY}=... override")

    plan = []
    for stem, config in stems.items():
        for seed in seeds:
            cfg = load_config(config, [*overrides, f"{SEED_KEY}={seed}"])
            spec = RunSpec(
                name=stem, loss_type=cfg.loss.heatmap.type, seed=seed, run_dir=work_dir / stem / f"seed{seed}"
            )
            status = run_status(spec.run_dir, cfg.solver.epochs)
            if status.config is not None:
                changed = config_differences(status.config, config_to_dict(cfg), ignore=RUNTIME_ONLY_KEYS)
                if changed:
                    raise ValueError(
                        f"{spec.run_dir / 'checkpoints' / 'last.pth'} was trained with a different config "
                        f"({', '.join(changed)} differ from {config} + overrides); use another --work-dir"
                    )
            plan.append((spec, cfg, status))
    return plan


@contextmanager
def run_log(run_dir: Path) -> Iterator[None]:
    """Also log everything into ``run_dir/run.log`` while one run trains (the study log gets it too)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / "run.log")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
    root = logging.getLogger("centernet")
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def train_run(spec: RunSpec, cfg: Config, status: RunStatus, *, progress: bool) -> None:
    """Train (or resume, or only evaluate) one run and add its wall time to ``run_info.json``."""
    epochs = cfg.solver.epochs
    resume = status.completed_epochs > 0
    action = f"resuming after epoch {status.completed_epochs}/{epochs}" if resume else f"training {epochs} epochs"
    logger.info("%s seed %d (%s loss): %s in %s", spec.name, spec.seed, spec.loss_type, action, spec.run_dir)
    started = time.perf_counter()
    finished = False
    try:
        with run_log(spec.run_dir):
            trainer = Trainer.from_config(cfg, spec.run_dir, resume=True if resume else None, progress=progress)
            complete_run(trainer)  # also a run trained but stopped before its final evaluation
        finished = True
    finally:
        info = record_run_time(spec.run_dir, time.perf_counter() - started, finished=finished, resumed=resume)
    logger.info("%s seed %d finished in %.1f s", spec.name, spec.seed, info["train_time_s"])


def run_plan(plan: list[tuple[RunSpec, Config, RunStatus]], *, progress: bool) -> tuple[list[RunSpec], list[RunSpec]]:
    """Train every run of ``plan`` not done yet; returns the finished and the failed runs."""
    finished: list[RunSpec] = []
    failed: list[RunSpec] = []
    for index, (spec, cfg, status) in enumerate(plan, start=1):
        logger.info("run %d/%d", index, len(plan))
        if status.done:
            logger.info("%s seed %d is done (%d epochs): skipped", spec.name, spec.seed, status.completed_epochs)
            finished.append(spec)
            continue
        try:
            train_run(spec, cfg, status, progress=progress)
        except USER_ERRORS as error:
            report_error(error, logger, prefix=f"{spec.name} seed {spec.seed} failed: ")
            failed.append(spec)
            continue
        finished.append(spec)
    return finished, failed


def ablate(args: argparse.Namespace, work_dir: Path) -> int:
    plan = plan_runs(args.configs, args.seeds, args.overrides, work_dir)
    setup_tool_logging(work_dir)  # the study log, once every config has loaded
    finished, failed = run_plan(plan, progress=not args.no_progress)
    if finished:
        table = write_reports([collect_run(spec) for spec in finished], work_dir)
        logger.info("ablation of %d runs (%s, %s, %s in %s):\n%s", len(finished), CSV_FILE, MARKDOWN_FILE, PLOT_FILE,
                    work_dir, table)
    if failed:
        names = ", ".join(f"{spec.name}/seed{spec.seed}" for spec in failed)
        logger.error("%d of %d runs failed (%s); rerun the same command to retry them", len(failed), len(plan), names)
        return EXIT_ERROR
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work_dir = Path(args.work_dir)
    setup_tool_logging(None)
    return run_tool(lambda: ablate(args, work_dir), logger)


if __name__ == "__main__":
    sys.exit(main())
