"""Run an ablation study: train + evaluate every config x seed, then compare them in a table and a plot.

python tools/ablate.py --configs configs/ablations/*.yaml --seeds 0 1 2 [--work-dir DIR] [--no-progress]
    [--baseline CONFIG] [--val-set NAME] [--report-only] [--export-records DIR]
    [--jobs N | --launcher submitit [--partition P] [--timeout MIN] [--gpus-per-node G]]
    [--tune KEY=[v1,v2,...] ... | --tune SPACE.yaml] [--tune-seeds SEED ...] [--select-set NAME]
    [--allow-same-set] [KEY=VALUE ...]

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

--tune gives every config (arm) the same search: every point of the grid (KEY=[v1,v2,...] words and/or a
YAML file of such lists) trains on --tune-seeds (default 100) as a trial in <work-dir>/<config
stem>/tune/<point>/seed<seed>/ and is scored on --select-set (default: the config's first named set); each
arm's point of highest mean AP (the earlier on a tie) then trains the --seeds, reported on --val-set, which
must be another set (--allow-same-set allows the same). A trial that diverges is recorded as failed and
the search goes on; an arm's final runs start once all its trials finished or failed. The choices, every
trial's AP and the machine-hours are in tuning_<select set>.md/.csv/.png, the chosen settings also in the
ablation table.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Callable
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
    read_run_info,
    report_file,
    run_status,
    write_reports,
)
from centernet.ablation.launch import run_pool, run_sequential, run_submitit
from centernet.ablation.tuning import (
    SearchSpace,
    TrialPoint,
    TrialScore,
    choose,
    edge_keys,
    is_divergence,
    is_search_axis,
    parse_search_space,
    record_failure,
    recorded_failure,
    score_trials,
    spec_key,
    trial_dir,
)
from centernet.ablation.tuning_report import TUNING_MD, write_tuning_report
from centernet.cli import EXIT_ERROR, EXIT_OK, ToolArgumentParser, default_argument_parser, run_tool, setup_tool_logging
from centernet.config import Config, ConfigError, config_to_dict, load_config
from centernet.config.schema import val_set_names
from centernet.jobs import add_submitit_arguments, submitit_options

logger = logging.getLogger("centernet.tools.ablate")

DEFAULT_WORK_DIR = Path("work_dirs") / "ablation"
SEED_KEY = "runtime.seed"
LAUNCHERS = ("local", "submitit")
THREADS_KEY = "runtime.threads"
DEFAULT_TUNE_SEEDS = (100,)  # apart from the usual final seeds 0, 1, 2, ...


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
    tuning = parser.add_argument_group("tuning (every config gets the same search)")
    tuning.add_argument("--tune", nargs="+", metavar="AXIS", help="search space: KEY=[v1,v2,...] words or a YAML file")
    tuning.add_argument("--tune-seeds", nargs="+", type=int, default=list(DEFAULT_TUNE_SEEDS), metavar="SEED",
                        help=f"seeds of every trial (default: {' '.join(map(str, DEFAULT_TUNE_SEEDS))})")
    tuning.add_argument("--select-set", metavar="NAME", help="named set the trials are scored on (default: the first)")
    tuning.add_argument("--allow-same-set", action="store_true",
                        help="allow the selection set to be the report set (--val-set): a biased report")
    parser.keep_words("tune", is_search_axis)  # KEY=[...] after --tune is an axis; other KEY=VALUE an override
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
    if args.tune is None and (args.select_set is not None or args.allow_same_set):
        parser.error("--select-set and --allow-same-set are for a tuned study (--tune)")
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
    configs: list[str], seeds: list[int], overrides: list[str], work_dir: Path, val_set: str | None = None,
    *, folder: Callable[[str], Path] | None = None, report_only: bool = False,
) -> list[tuple[RunSpec, Config, RunStatus]]:
    """Load every config x seed and inspect its run folder before anything trains.

    ``folder(stem)`` holds a config's ``seed<seed>/`` runs (default ``work_dir/<stem>``). A run trained with
    another config is refused, or with ``report_only`` (nothing trains) reported with a warning.

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
            root = folder(stem) if folder is not None else work_dir / stem
            spec = RunSpec(name=stem, loss_type=cfg.loss.heatmap.type, seed=seed,
                           run_dir=root / f"seed{seed}", val_set=report_set(cfg, config, val_set))
            if plan and plan[0][0].val_set != spec.val_set:
                raise ValueError(f"{config} reports validation set {spec.val_set!r} but {plan[0][0].name} reports "
                                 f"{plan[0][0].val_set!r}; compare configs with the same data.val")
            status = run_status(spec, cfg.solver.epochs)
            if status.config is not None:
                changed = config_differences(status.config, config_to_dict(cfg), ignore=RUNTIME_ONLY_KEYS)
                if changed and report_only:
                    logger.warning("%s was trained with a different config (%s differ from %s + overrides); "
                                   "reported as it is", status.config_source, ", ".join(changed), config)
                elif changed:
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


Plan = list[tuple[RunSpec, Config, RunStatus]]


def run_plan(plan: Plan, args: argparse.Namespace, seeds: list[int],
             what: str) -> tuple[list[RunSpec], list[tuple[RunSpec, str]]]:
    """Train the runs of ``plan`` not done yet (none with ``--report-only``); the finished runs in plan order and
    the failed ones with their errors."""
    finished = [spec for spec, _, status in plan if status.done]
    for spec, _, status in plan:
        if status.done:
            logger.info("%s seed %d is done (%d epochs): skipped", spec.name, spec.seed, status.completed_epochs)
    pending = seed_major([run for run in plan if not run[2].done], seeds)
    if args.report_only:
        if pending:
            names = ", ".join(f"{spec.name}/seed{spec.seed}" for spec, _, _ in pending)
            logger.info("--report-only: %d of %d %s are not finished and left out: %s", len(pending), len(plan),
                        what, names)
        return finished, []
    errors = launch(pending, args)  # ImportError: --launcher submitit without the package
    failures = []
    for spec, error in zip([spec for spec, _, _ in pending], errors, strict=True):
        if error is None:
            finished.append(spec)
        else:
            logger.error("%s seed %d failed: %s", spec.name, spec.seed, error)
            failures.append((spec, error))
    order = [spec for spec, _, _ in plan]
    return sorted(finished, key=order.index), failures


def plan_trials(args: argparse.Namespace, work_dir: Path, space: SearchSpace) -> tuple[list[TrialPoint], Plan]:
    """Every arm x point x tuning seed, point by point (each arm's search covers the same points so far).

    Raises:
        ValueError: a trial's config does not load (the message names the trial), a key tuned and overridden,
            or a selection set equal to the report set without ``--allow-same-set``.
    """
    tuned = set(space.keys)
    if SEED_KEY in tuned:
        raise ValueError(f"--tune {SEED_KEY}: the trials' seeds are --tune-seeds")
    both = sorted(tuned & {item.partition("=")[0].strip() for item in args.overrides})
    if both:
        raise ValueError(f"--tune {both[0]}: the key is also set by an override; give it in one place")
    first = load_config(args.configs[0], args.overrides)
    select = report_set(first, args.configs[0], args.select_set)
    if select == report_set(first, args.configs[0], args.val_set) and not args.allow_same_set:
        raise ValueError(f"--tune: the selection set {select or '(the one data.val)'} is also the report set; "
                         "report on another with --val-set NAME (or accept the bias with --allow-same-set)")
    points, plan = space.points(), []
    for point in points:
        try:
            plan += plan_runs(args.configs, args.tune_seeds, [*args.overrides, *point.overrides], work_dir, select,
                              folder=functools.partial(trial_dir, work_dir, point=point),
                              report_only=args.report_only)
        except (ConfigError, ValueError) as error:
            raise ValueError(f"--tune trial {point.name}: {error}") from error
    return points, plan


def tune(args: argparse.Namespace, points: list[TrialPoint],
         plan: Plan) -> tuple[dict[str, list[TrialScore]], list[tuple[RunSpec, str]]]:
    """Run the trials not done or failed yet; each arm's scored trials and the trials that failed now."""
    runnable = []
    for spec, cfg, status in plan:
        error = recorded_failure(spec.run_dir)
        if error is None:
            runnable.append((spec, cfg, status))
        else:
            logger.info("trial %s of %s seed %d failed before: %s", spec.run_dir.parent.name, spec.name, spec.seed,
                        error)
    logger.info("tuning: %d points x %d configs x %d seeds = %d trials", len(points), len(args.configs),
                len(args.tune_seeds), len(plan))
    finished, errors = run_plan(runnable, args, args.tune_seeds, "trials")
    for spec, error in errors:
        if is_divergence(error):
            record_failure(spec.run_dir, error)  # a trial that diverged stays failed; the search goes on
    trials: dict[str, list[TrialScore]] = {}
    for stem in dict.fromkeys(spec.name for spec, _, _ in plan):
        results = {spec_key(spec): collect_run(spec) for spec in finished if spec.name == stem}
        arm_failures = {spec_key(spec): recorded_failure(spec.run_dir) for spec, _, _ in plan if spec.name == stem}
        trials[stem] = score_trials(stem, points, results, arm_failures, args.tune_seeds)
    return trials, errors


def final_plan(args: argparse.Namespace, work_dir: Path, trials: dict[str, list[TrialScore]],
               space: SearchSpace) -> tuple[Plan, dict[str, str]]:
    """The final seeds of every arm whose search is complete, with its chosen setting; the settings by arm."""
    plan: Plan = []
    settings: dict[str, str] = {}
    for config in args.configs:
        stem = Path(config).stem
        scores = trials[stem]
        best = choose(scores)
        if not all(score.complete for score in scores) or best is None:
            left = sum(not score.complete for score in scores)
            logger.warning("%s: %s; its final runs wait", stem,
                           f"{left} of {len(scores)} trials not finished" if left else "every trial failed")
            continue
        logger.info("%s: chose %s (selection AP %.4f over %d trials)", stem, best.point.name, best.mean, len(scores))
        for key in edge_keys(space, best.point):
            logger.warning("%s: the chosen %s is at the edge of its values: the best may lie outside them", stem, key)
        settings[stem] = best.point.name
        plan += plan_runs([config], args.seeds, [*args.overrides, *best.point.overrides], work_dir, args.val_set,
                          report_only=args.report_only)
    return plan, settings


def ablate(args: argparse.Namespace, work_dir: Path) -> int:
    if args.report_only and not work_dir.is_dir():
        raise FileNotFoundError(f"--report-only: {work_dir} does not exist (no study to report)")
    space = parse_search_space(args.tune) if args.tune is not None else None
    if space is not None:
        points, trial_runs = plan_trials(args, work_dir, space)
    else:
        plan = plan_runs(args.configs, args.seeds, args.overrides, work_dir, args.val_set, report_only=args.report_only)
    setup_tool_logging(work_dir)  # the study log, once every config has loaded
    settings = None
    trial_errors: list[tuple[RunSpec, str]] = []
    if space is not None:
        trials, trial_errors = tune(args, points, trial_runs)
        plan, settings = final_plan(args, work_dir, trials, space)
    finished, errors = run_plan(plan, args, args.seeds, "runs")
    if args.report_only and not finished and space is None:
        raise ValueError(f"--report-only: no run in {work_dir} has finished yet ({len(plan)} planned)")
    baseline = args.baseline
    if baseline is not None and all(spec.name != baseline for spec in finished):
        logger.warning("the baseline %s has no finished run: the first config is the baseline", baseline)
        baseline = None
    results = [collect_run(spec) for spec in finished]
    if results:
        tag = finished[0].val_set
        table = write_reports(results, work_dir, baseline, tag, settings)
        files = ", ".join(report_file(name, tag) for name in (CSV_FILE, MARKDOWN_FILE, PLOT_FILE, CURVES_FILE))
        logger.info("ablation of %d runs (%s in %s):\n%s", len(finished), files, work_dir, table)
    if space is not None:
        select = trial_runs[0][0].val_set if trial_runs else None
        text = write_tuning_report(trials, results, space, work_dir, select)
        logger.info("tuning (%s in %s):\n%s", report_file(TUNING_MD, select), work_dir, text)
    if args.export_records:
        runs = [*finished, *(spec for spec, _, _ in (trial_runs if space else [])
                             if read_run_info(spec.run_dir).get("finished") is True
                             or recorded_failure(spec.run_dir) is not None)]
        copied = sum(export_record(spec, Path(args.export_records), spec.run_dir.relative_to(work_dir))
                     for spec in runs)
        logger.info("records of %d finished runs in %s (%d files new)", len(runs), args.export_records, copied)
    failures = [f"{spec.run_dir.relative_to(work_dir)}: {error}" for spec, error in [*trial_errors, *errors]]
    if failures:
        logger.error("%d runs failed (%s); rerun the same command to retry them (a diverged trial stays failed)",
                     len(failures), "; ".join(failures))
        return EXIT_ERROR
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_tool_logging(None)
    return run_tool(lambda: ablate(args, Path(args.work_dir)), logger)


if __name__ == "__main__":
    sys.exit(main())
