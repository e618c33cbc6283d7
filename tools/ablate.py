"""Run an ablation study: train + evaluate every config x seed, then compare them in a table and a plot.

python tools/ablate.py --configs configs/ablations/*.yaml --seeds 0 1 2 [--work-dir DIR] [--no-progress]
    [--baseline CONFIG] [--val-set NAME] [--report-only] [--export-records DIR]
    [--jobs N | --launcher submitit [--partition P] [--timeout MIN] [--gpus-per-node G]] [KEY=VALUE ...]

Runs go into <work-dir>/<config stem>/seed<seed>/ with runtime.seed=<seed> and the overrides, seed by
seed (every config's first seed, then the next): one after another, N at a time (--jobs N: one GPU each,
or the CPU threads split) or as SLURM jobs (--launcher submitit). Rerunning the same command skips
finished runs and resumes interrupted ones. The results land in <work-dir>/ablation.csv (one row per
run), ablation.md (mean ± std and 95% t interval over seeds per config, the AP difference to --baseline
paired by seed), ablation.png (with the validation curves), ablation_curves.csv (those curves' numbers)
and ablation_ghm_bins.png (GHM losses). With named validation sets (data.val a list) the study reports
the first set, or --val-set NAME, and the file names carry it (ablation_<set>.md, ...); rerun with
another --val-set for another set's report (finished runs are not trained again). --report-only trains
nothing and reports the runs finished so far (a study still running here or on a cluster); the runs not
finished yet are named in the log. A run that fails (e.g. a diverging loss) is reported and the others
still run. --export-records DIR copies what the report reads of every finished run (config.yaml,
run_info.json, metrics.jsonl, eval/**/metrics.json; no checkpoints) to DIR/<config stem>/seed<seed>/: a
study folder holding such kept records counts those runs as done, so a study can be kept, shared or
continued elsewhere without its checkpoints (docs/loss_study.md).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from centernet.ablation import (
    CSV_FILE,
    CURVES_FILE,
    MARKDOWN_FILE,
    PLOT_FILE,
    RUNTIME_ONLY_KEYS,
    RunSpec,
    RunStatus,
    collect_run,
    config_differences,
    export_record,
    report_file,
    run_status,
    write_reports,
)
from centernet.ablation.launch import run_pool, run_sequential, run_submitit
from centernet.cli import EXIT_ERROR, EXIT_OK, ToolArgumentParser, default_argument_parser, run_tool, setup_tool_logging
from centernet.config import Config, config_to_dict, load_config
from centernet.config.schema import val_set_names
from centernet.jobs import add_submitit_arguments, submitit_options

logger = logging.getLogger("centernet.tools.ablate")

DEFAULT_WORK_DIR = Path("work_dirs") / "ablation"
SEED_KEY = "runtime.seed"
LAUNCHERS = ("local", "submitit")
THREADS_KEY = "runtime.threads"


def build_parser() -> ToolArgumentParser:
    parser = default_argument_parser(__doc__, config="none")
    parser.add_argument("--configs", nargs="+", required=True, metavar="CFG", help="experiment YAML files")
    parser.add_argument("--seeds", nargs="+", required=True, metavar="SEED", help="values of runtime.seed")
    parser.add_argument("--work-dir", default=str(DEFAULT_WORK_DIR), help=f"study folder (default: {DEFAULT_WORK_DIR})")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--baseline", metavar="CONFIG", help="config stem to compare with (default: the first)")
    parser.add_argument("--val-set", metavar="NAME", help="named validation set to report (default: the first)")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: report the runs finished so far")
    parser.add_argument("--export-records", metavar="DIR",
                        help="copy the finished runs' records (no checkpoints) to DIR/<config>/seed<seed>/")
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="local runs at a time (default: 1)")
    parser.add_argument("--launcher", choices=LAUNCHERS, default="local", help="local processes or submitit jobs")
    add_submitit_arguments(parser)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_tool_args(argv)  # KEY=VALUE words after --configs / --seeds go to the overrides
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.launcher == "submitit" and args.jobs != 1:
        parser.error("--jobs is for --launcher local; submitit runs every job the cluster allows")
    stems = [Path(config).stem for config in args.configs]
    if args.baseline is not None and args.baseline not in stems:
        parser.error(f"--baseline {args.baseline} is not one of the config stems {stems}")
    try:
        args.seeds = [int(item) for item in args.seeds]
    except ValueError:
        parser.error(f"--seeds expects integers, got {args.seeds}")
    return args


def report_set(cfg: Config, config: str, requested: str | None) -> str | None:
    """The named validation set a study reports: ``requested`` (``--val-set``) or the config's first set.

    Raises:
        ValueError: ``--val-set`` with a single unnamed set, or a name the config does not have.
    """
    names = val_set_names(cfg)
    if names is None:
        if requested is not None:
            raise ValueError(f"--val-set {requested}: {config} has a single unnamed data.val set")
        return None
    if requested is None:
        return names[0]
    if requested not in names:
        raise ValueError(f"--val-set {requested}: {config} has the validation sets {names}")
    return requested


def plan_runs(
    configs: list[str], seeds: list[int], overrides: list[str], work_dir: Path, val_set: str | None = None
) -> list[tuple[RunSpec, Config, RunStatus]]:
    """Load every config x seed and inspect its run folder before anything trains.

    Raises:
        ValueError: duplicate config stems or seeds, an override of ``runtime.seed``, a run folder
            whose checkpoint was trained with a different config, or configs reporting different
            validation sets.
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

    plan: list[tuple[RunSpec, Config, RunStatus]] = []
    for stem, config in stems.items():
        for seed in seeds:
            cfg = load_config(config, [*overrides, f"{SEED_KEY}={seed}"])
            spec = RunSpec(name=stem, loss_type=cfg.loss.heatmap.type, seed=seed,
                           run_dir=work_dir / stem / f"seed{seed}", val_set=report_set(cfg, config, val_set))
            if plan and plan[0][0].val_set != spec.val_set:
                raise ValueError(f"{config} reports validation set {spec.val_set!r} but {plan[0][0].name} reports "
                                 f"{plan[0][0].val_set!r}; compare configs with the same data.val")
            status = run_status(spec, cfg.solver.epochs)
            if status.config is not None:
                changed = config_differences(status.config, config_to_dict(cfg), ignore=RUNTIME_ONLY_KEYS)
                if changed:
                    raise ValueError(
                        f"{status.config_source} was trained with a different config "
                        f"({', '.join(changed)} differ from {config} + overrides); use another --work-dir"
                    )
            plan.append((spec, cfg, status))
    return plan


def seed_major(
    pending: list[tuple[RunSpec, Config, RunStatus]], seeds: list[int]
) -> list[tuple[RunSpec, Config, RunStatus]]:
    """The runs seed by seed in ``--seeds`` order (every config's first seed, then the next), configs in plan order.

    A study stopped part-way (or still running) then has whole seeds of every config: paired
    comparisons for the report instead of all seeds of the first configs and none of the last.
    """
    return sorted(pending, key=lambda run: seeds.index(run[0].seed))  # stable: plan order within a seed


def launch(pending: list[tuple[RunSpec, Config, RunStatus]], args: argparse.Namespace) -> list[str | None]:
    """Train the pending runs as ``args`` says; the error (or None) of each run, in order."""
    runs = [(spec, cfg) for spec, cfg, _ in pending]
    if pending and args.launcher == "submitit":
        return run_submitit(runs, Path(args.work_dir) / "submitit", submitit_options(args))
    if pending and args.jobs > 1:
        threads_set = any(item.partition("=")[0].strip() == THREADS_KEY for item in args.overrides)
        return run_pool(runs, args.jobs, threads_set=threads_set)
    return run_sequential(pending, progress=not args.no_progress)


def ablate(args: argparse.Namespace, work_dir: Path) -> int:
    if args.report_only and not work_dir.is_dir():
        raise FileNotFoundError(f"--report-only: {work_dir} does not exist (no study to report)")
    plan = plan_runs(args.configs, args.seeds, args.overrides, work_dir, args.val_set)
    setup_tool_logging(work_dir)  # the study log, once every config has loaded
    finished: list[RunSpec] = []
    failed: list[RunSpec] = []
    pending: list[tuple[RunSpec, Config, RunStatus]] = []
    for spec, cfg, status in plan:
        if status.done:
            logger.info("%s seed %d is done (%d epochs): skipped", spec.name, spec.seed, status.completed_epochs)
            finished.append(spec)
        else:
            pending.append((spec, cfg, status))
    pending = seed_major(pending, args.seeds)
    if args.report_only:
        if pending:
            names = ", ".join(f"{spec.name}/seed{spec.seed}" for spec, _, _ in pending)
            logger.info("--report-only: %d of %d runs are not finished and left out: %s",
                        len(pending), len(plan), names)
        pending = []
        if not finished:
            raise ValueError(f"--report-only: no run in {work_dir} has finished yet ({len(plan)} planned)")
    errors = launch(pending, args)  # ImportError: --launcher submitit without the package
    for spec, error in zip([spec for spec, _, _ in pending], errors, strict=True):
        if error is None:
            finished.append(spec)
        else:
            logger.error("%s seed %d failed: %s", spec.name, spec.seed, error)
            failed.append(spec)
    finished.sort(key=[spec for spec, _, _ in plan].index)  # table and CSV in plan order
    baseline = args.baseline
    if baseline is not None and all(spec.name != baseline for spec in finished):
        logger.warning("the baseline %s has no finished run: the first config is the baseline", baseline)
        baseline = None
    if finished:
        tag = finished[0].val_set
        table = write_reports([collect_run(spec) for spec in finished], work_dir, baseline, tag)
        files = ", ".join(report_file(name, tag) for name in (CSV_FILE, MARKDOWN_FILE, PLOT_FILE, CURVES_FILE))
        logger.info("ablation of %d runs (%s in %s):\n%s", len(finished), files, work_dir, table)
    if args.export_records:
        copied = sum(export_record(spec, Path(args.export_records)) for spec in finished)
        logger.info("records of %d finished runs in %s (%d files new)", len(finished), args.export_records, copied)
    if failed:
        names = ", ".join(f"{spec.name}/seed{spec.seed}" for spec in failed)
        logger.error("%d of %d runs failed (%s); rerun the same command to retry them", len(failed), len(plan), names)
        return EXIT_ERROR
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_tool_logging(None)
    return run_tool(lambda: ablate(args, Path(args.work_dir)), logger)


if __name__ == "__main__":
    sys.exit(main())
