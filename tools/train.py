"""Train (and evaluate) a CenterNet detector from a YAML config.

python tools/train.py --config configs/shapes_resnet18.yaml [--work-dir DIR] [--resume [PATH]] [KEY=VALUE ...]
torchrun --nproc_per_node N tools/train.py --config ... (DDP: data.batch_size per process, rank 0 writes)

The run folder (default work_dirs/<config file stem>) must be empty or absent: a folder that already holds
a run needs --resume (continue it), another --work-dir, --overwrite (the old run is moved aside to
<folder>.old-<timestamp>, nothing is deleted) or --auto-resume (a finished run: print its metrics and stop;
an interrupted one: resume it; otherwise start; `make demo` uses it).

SIGTERM, SIGINT and SIGUSR1 (runtime.stop_signals) stop training at the next step: a checkpoint is written
and the process exits with 128 + the signal's number (143 for SIGTERM); the same command with --auto-resume
continues from that step. Under torchrun --max-restarts, a restarted group resumes from the newest
checkpoint by itself. --launcher submitit trains in a submitit job (SLURM, or --cluster local), which on
preemption or time-out checkpoints, requeues itself and resumes (docs/failures.md, "Preemption and restarts").
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from centernet.cli import default_argument_parser, is_main_process, run_tool, setup_tool_logging
from centernet.config import Config, load_config
from centernet.config.schema import val_set_names
from centernet.engine.distributed import ELASTIC_RESTART_VARIABLE, barrier, destroy_distributed
from centernet.engine.preemption import TrainingStopped
from centernet.engine.run_dir import RunDirPlan, complete_run, finished_run_summary, plan_run_dir
from centernet.engine.trainer import Trainer
from centernet.jobs import TrainJob, add_submitit_arguments, submit, submitit_options

logger = logging.getLogger("centernet.tools.train")




def build_parser() -> argparse.ArgumentParser:
    parser = default_argument_parser(__doc__)
    parser.add_argument("--work-dir", help="run folder (default: work_dirs/<config file stem>)")
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="PATH",
        help="resume from PATH, or from <work-dir>/checkpoints/last.pth when no PATH is given",
    )
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true",
                          help="move a run already in the work dir aside (<dir>.old-<timestamp>) and start afresh")
    existing.add_argument("--auto-resume", action="store_true",
                          help="report a finished run in the work dir, resume an interrupted one, else start")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--launcher", choices=("local", "submitit"), default="local",
                        help="train here, or as a submitit job (SLURM; requeued and resumed on preemption)")
    add_submitit_arguments(parser)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_tool_args(argv)


def default_work_dir(config: str) -> Path:
    return Path("work_dirs") / Path(config).stem


def elastic_restart_count() -> int:
    """How many times torchrun's elastic agent has restarted this worker group (0 outside torchrun)."""
    try:
        return int(os.environ.get(ELASTIC_RESTART_VARIABLE, "0"))
    except ValueError:
        return 0


def train(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)  # before anything is written: a bad config leaves no folder
    work_dir = Path(args.work_dir) if args.work_dir else default_work_dir(args.config)
    restarts = elastic_restart_count()
    if restarts and not args.resume and not args.overwrite:  # a restarted group continues the run it was training
        logger.info("elastic restart %d: resuming from the newest checkpoint in %s", restarts, work_dir)
        args.auto_resume = True
    plan = plan_run_dir(work_dir, epochs=cfg.solver.epochs, resume=args.resume, overwrite=args.overwrite,
                        auto_resume=args.auto_resume, val_sets=val_set_names(cfg), is_main=is_main_process())
    if plan.finished:
        logger.info("%s holds a finished run: %s", work_dir, finished_run_summary(work_dir, val_set_names(cfg)))
        logger.info("train again with --overwrite (the run is moved aside) or --work-dir DIR")
        return 0
    if args.launcher == "submitit":
        return submit_run(args, work_dir)
    setup_tool_logging(work_dir)
    if plan.moved_to is not None:
        logger.info("moved the earlier run in %s to %s", work_dir, plan.moved_to)
    try:
        fit(cfg, work_dir, plan, progress=not args.no_progress)
    except TrainingStopped as stop:
        logger.warning("%s", stop)
        return stop.exit_code
    return 0


def submit_run(args: argparse.Namespace, work_dir: Path) -> int:
    """Train in a submitit job (it resumes the run in ``work_dir`` whenever it is requeued); its exit status."""
    folder = work_dir.parent / f"{work_dir.name}.submitit"  # beside the run: the run folder stays the run's
    job_spec = TrainJob(str(Path(args.config).resolve()), args.overrides, str(work_dir.resolve()))
    (job,) = submit([job_spec], folder, submitit_options(args), name=work_dir.name)
    logger.info("job %s trains %s (submitit logs in %s); waiting for it", job.job_id, work_dir, folder)
    code = int(job.result() or 0)
    logger.info("job %s ended with status %d", job.job_id, code)
    return code


def fit(cfg: Config, work_dir: Path, plan: RunDirPlan, *, progress: bool) -> None:
    trainer = Trainer.from_config(cfg, work_dir, resume=plan.resume, progress=progress)
    complete_run(trainer)
    barrier()  # every rank finishes together: a rank leaving the process group early can abort gloo's threads


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_tool_logging(None)
    return run_tool(lambda: train(args), logger, cleanup=destroy_distributed)


if __name__ == "__main__":
    sys.exit(main())
