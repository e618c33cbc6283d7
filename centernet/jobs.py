"""Cluster jobs through ``submitit``: the options every launcher shares and a single training run as a job.

``tools/train.py --launcher submitit`` and ``tools/ablate.py --launcher submitit`` submit their runs as
``submitit`` jobs (SLURM, or its local executor). A job is *checkpointable* in submitit's sense: on
preemption or time-out SLURM sends the job its signal (``USR2``), the run checkpoints at the next step
(:mod:`centernet.engine.preemption`), submitit calls the job's ``checkpoint()`` and requeues it, and the
requeued job resumes from that checkpoint (docs/failures.md, "Preemption and restarts").
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubmititOptions:
    """Resources of each SLURM job (``--launcher submitit``).

    Args:
        cluster: ``None`` = SLURM when available, else local; ``"slurm" | "local" | "debug"``.
        partition: SLURM partition (``None`` = the cluster's default).
        timeout_min: wall-time limit of a job in minutes (requeued and resumed when reached).
        gpus_per_node: GPUs of a job.
        cpus_per_task: CPU cores of a job.
    """

    cluster: str | None = None
    partition: str | None = None
    timeout_min: int = 240
    gpus_per_node: int = 1
    cpus_per_task: int = 8


def add_submitit_arguments(parser: argparse.ArgumentParser) -> None:
    """``--cluster --partition --timeout --gpus-per-node --cpus-per-task`` (read back by :func:`submitit_options`)."""
    slurm = parser.add_argument_group("--launcher submitit")
    slurm.add_argument("--cluster", choices=("slurm", "local", "debug"), help="submitit cluster (default: auto)")
    slurm.add_argument("--partition", help="SLURM partition")
    slurm.add_argument("--timeout", type=int, default=240, metavar="MIN", help="job time limit, minutes (default 240)")
    slurm.add_argument("--gpus-per-node", type=int, default=1, metavar="G", help="GPUs per job (default 1)")
    slurm.add_argument("--cpus-per-task", type=int, default=8, metavar="C", help="CPU cores per job (default 8)")


def submitit_options(args: argparse.Namespace) -> SubmititOptions:
    """The :class:`SubmititOptions` of :func:`add_submitit_arguments`' options."""
    return SubmititOptions(cluster=args.cluster, partition=args.partition, timeout_min=args.timeout,
                           gpus_per_node=args.gpus_per_node, cpus_per_task=args.cpus_per_task)


def submit(callables: Sequence[Any], folder: Path, options: SubmititOptions, *, name: str) -> list[Any]:
    """Submit one job per callable; returns the ``submitit`` jobs.

    Raises:
        ImportError: ``submitit`` is not installed.
    """
    try:
        import submitit
    except ImportError as error:
        raise ImportError("--launcher submitit needs the submitit package (pip install submitit)") from error
    executor = submitit.AutoExecutor(folder=folder, cluster=options.cluster)
    parameters: dict[str, Any] = {"name": name, "timeout_min": options.timeout_min, "tasks_per_node": 1,
                                  "gpus_per_node": options.gpus_per_node, "cpus_per_task": options.cpus_per_task}
    if options.partition:
        parameters["slurm_partition"] = options.partition
    executor.update_parameters(**parameters)
    return [executor.submit(callable_) for callable_ in callables]


class TrainJob:
    """One training run as a picklable ``submitit`` job: trains (or resumes, as ``--auto-resume``) the run in
    ``work_dir``; ``checkpoint`` requeues the same job, which resumes from the run's newest checkpoint."""

    def __init__(self, config: str, overrides: Sequence[str], work_dir: str) -> None:
        self.config, self.overrides, self.work_dir = config, list(overrides), work_dir

    def __call__(self) -> int:
        from centernet.cli import setup_tool_logging  # the heavy imports only inside the job
        from centernet.config import load_config
        from centernet.config.schema import val_set_names
        from centernet.engine.preemption import TrainingStopped
        from centernet.engine.run_dir import complete_run, plan_run_dir
        from centernet.engine.trainer import Trainer

        cfg = load_config(self.config, self.overrides)
        work_dir = Path(self.work_dir)
        plan = plan_run_dir(work_dir, epochs=cfg.solver.epochs, resume=None, overwrite=False, auto_resume=True,
                            val_sets=val_set_names(cfg))
        if plan.finished:
            return 0
        setup_tool_logging(work_dir)
        try:
            complete_run(Trainer.from_config(cfg, work_dir, resume=plan.resume, progress=False))
        except TrainingStopped as stop:  # a stop signal other than the job's own (which requeues it)
            logger.warning("%s", stop)
            return stop.exit_code
        return 0

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Requeue the same run: it resumes from its newest checkpoint when it starts again."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(TrainJob(self.config, self.overrides, self.work_dir))
