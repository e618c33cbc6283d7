"""Running the runs of an ablation study: one after another, N at a time on one machine, or as SLURM jobs.

Every run trains in its own folder and is resumable, so all three ways share one rule: a run that
is done is skipped, an interrupted one resumes from its ``checkpoints/last.pth`` (the state is read
where the run starts, so a requeued SLURM job resumes too). ``tools/ablate.py`` picks the way:

- ``--jobs 1`` (default): in this process, one run after another.
- ``--jobs N``: a pool of N worker processes (``spawn``). With GPUs visible (``CUDA_VISIBLE_DEVICES``
  or all CUDA devices), worker ``i`` sees only device ``devices[i % len(devices)]``; on a CPU every
  run gets ``runtime.threads = max(1, cpu_count // N)`` unless the overrides set ``runtime.threads``.
- ``--launcher submitit``: one job per run through ``submitit`` (SLURM, or its local executor); a job
  preempted or timed out is requeued and resumes. This process waits for every job.

See ``docs/loss_study.md`` for the study commands.
"""

from __future__ import annotations

import atexit
import copy
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from centernet.ablation.runs import RunSpec, RunStatus, record_run_time, run_status
from centernet.config import Config, ConfigError
from centernet.engine.logging import LOG_FORMAT, setup_logging
from centernet.jobs import SubmititOptions, submit
from centernet.utils.errors import one_line_error

logger = logging.getLogger("centernet.ablation")

RUN_ERRORS = (ConfigError, FileNotFoundError, ValueError, FloatingPointError, OSError)
"""Errors that fail one run and let the others go on."""
SUBMITIT_FOLDER = "submitit"  # job scripts and logs, under the study folder


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
    from centernet.engine.run_dir import complete_run  # the heavy imports only where a run trains
    from centernet.engine.trainer import Trainer

    epochs = status.planned_epochs or cfg.solver.epochs  # solver.min_iters may stretch the plan (logged at start)
    resume = status.completed_epochs > 0
    action = f"resuming after epoch {status.completed_epochs}/{epochs}" if resume else f"training {epochs} epochs"
    if not resume and cfg.solver.min_iters > 0:  # the plan, known once the loader is built, may add epochs
        action += f" or at least {cfg.solver.min_iters} steps"
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


def execute(spec: RunSpec, cfg: Config, progress: bool = False) -> str | None:
    """Train one run from its current state (done: nothing; interrupted: resume).

    Returns:
        None on success, else the one-line error of a failure in :data:`RUN_ERRORS`.
    """
    from centernet.engine.preemption import TrainingStopped  # the heavy imports only where a run trains

    if not logging.getLogger("centernet").handlers:  # a fresh worker process or job
        setup_logging(None)
    try:
        status = run_status(spec, cfg.solver.epochs)
        if status.done:
            logger.info("%s seed %d is done (%d epochs): skipped", spec.name, spec.seed, status.completed_epochs)
            return None
        with _sigterm_unwinds_run():
            train_run(spec, cfg, status, progress=progress)
    except RUN_ERRORS as error:
        logger.debug("traceback of the error below", exc_info=True)
        return one_line_error(error)
    except (RunTerminated, TrainingStopped) as stop:  # the time is recorded; end the worker before its next run
        logger.info("%s seed %d stopped (%s); rerun the study to resume it", spec.name, spec.seed, stop)
        logging.shutdown()
        os._exit(stop.exit_code if isinstance(stop, TrainingStopped) else 128 + signal.SIGTERM)
    return None


def run_sequential(pending: Sequence[tuple[RunSpec, Config, RunStatus]], *, progress: bool) -> list[str | None]:
    """Train the runs one after another in this process; the error (or None) of each run, in order.

    A stop signal during training ends the run at the next step with a checkpoint (``StopHook``) and the
    study with ``SystemExit(128 + signal)``; outside training, SIGTERM raises ``SystemExit`` at once. Either
    way the run's wall time so far is recorded.
    """
    from centernet.engine.preemption import TrainingStopped

    errors: list[str | None] = []
    with _sigterm_as_exit():
        for index, (spec, cfg, status) in enumerate(pending, start=1):
            logger.info("run %d/%d", index, len(pending))
            try:
                train_run(spec, cfg, status, progress=progress)
            except TrainingStopped as stop:
                logger.info("%s seed %d: %s; rerun the study to resume it", spec.name, spec.seed, stop)
                raise SystemExit(stop.exit_code) from None
            except RUN_ERRORS as error:
                logger.debug("traceback of the error below", exc_info=True)
                errors.append(one_line_error(error))
                continue
            errors.append(None)
    return errors


class RunJob:
    """A picklable run for ``submitit``: called in the job; ``checkpoint`` requeues it on preemption."""

    def __init__(self, spec: RunSpec, cfg: Config) -> None:
        self.spec = spec
        self.cfg = cfg

    def __call__(self) -> str | None:
        return execute(self.spec, self.cfg)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Requeue the same run: it resumes from its last checkpoint when it starts again."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(RunJob(self.spec, self.cfg))


def visible_devices() -> list[str]:
    """The CUDA devices a worker may take: ``CUDA_VISIBLE_DEVICES`` entries, else every CUDA device."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [item.strip() for item in listed.split(",") if item.strip()]
    import torch

    return [str(index) for index in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def with_threads(cfg: Config, threads: int) -> Config:
    """A copy of ``cfg`` with ``runtime.threads = threads`` (a runtime-only key: resumes still match)."""
    copied = copy.deepcopy(cfg)
    copied.runtime.threads = threads
    return copied


class RunTerminated(BaseException):
    """SIGTERM reached a pool worker (the launcher stopping it): unwinds the run so that its wall time is recorded."""


def _raise_terminated(signum: int, _frame: Any) -> None:
    raise RunTerminated(signum)


def _exit_quietly(signum: int, _frame: Any) -> None:
    """SIGTERM of a pool worker between runs: nothing to record; the worker ends without a traceback.

    ``SystemExit`` unwinds the wait for the next run, releasing the run queue's lock on the way out.
    """
    sys.exit(128 + signum)


@contextmanager
def _sigterm_unwinds_run() -> Iterator[None]:
    """In a pool worker, SIGTERM during the run raises :class:`RunTerminated` (its time is recorded on the way out).

    Elsewhere (a ``submitit`` job, the launcher's own process) the signal handling is left as it is.
    """
    if signal.getsignal(signal.SIGTERM) is not _exit_quietly:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, _exit_quietly)


def _default_sigterm() -> None:
    """At exit, SIGTERM kills at once again: raised inside another exit callback, SystemExit prints a traceback."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _claim_device(slots: Any, devices: list[str]) -> None:
    """Pool initialiser: take the next slot and, with GPUs, see only that slot's device; SIGTERM ends the worker.

    An idle worker may be exiting already (the pool's shutdown sent it the stop sentinel) when the launcher's
    ``terminate`` arrives; the exit callback registered here, run before those registered earlier (torch's),
    restores the default action so that the signal ends it without a word.
    """
    signal.signal(signal.SIGTERM, _exit_quietly)
    atexit.register(_default_sigterm)
    slot = slots.get()
    if devices:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices[slot % len(devices)]


def run_pool(
    runs: Sequence[tuple[RunSpec, Config]], jobs: int, *, threads_set: bool = False
) -> list[str | None]:
    """Train the runs ``jobs`` at a time in worker processes; the error (or None) of each run, in order.

    Args:
        runs: the runs and their configs.
        jobs: number of worker processes (>= 1).
        threads_set: the overrides set ``runtime.threads``: keep it instead of splitting the CPU.
    """
    devices = visible_devices()
    if not devices and not threads_set:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        runs = [(spec, with_threads(cfg, threads)) for spec, cfg in runs]
        logger.info("%d runs at a time on the CPU, %d threads each", jobs, threads)
    elif devices:
        logger.info("%d runs at a time on devices %s (one each)", jobs, ",".join(devices))
    context = multiprocessing.get_context("spawn")
    slots = context.Queue()
    for slot in range(jobs):
        slots.put(slot)
    with _sigterm_as_exit(), ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_claim_device, initargs=(slots, devices)
    ) as pool:
        try:
            futures = [pool.submit(execute, spec, cfg) for spec, cfg in runs]
            return [_outcome(future.result) for future in futures]
        except BaseException:
            # Killed or interrupted: stop the workers too. Left running, they would go on writing into the
            # run folders, and a rerun of the study would put a second process on the same checkpoints.
            _stop_workers(pool)
            raise


@contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """In the main thread, SIGTERM (``kill``, a scheduler stopping the job) raises SystemExit like Ctrl-C would."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel the queued runs and terminate the pool's worker processes (their loader workers follow)."""
    workers = list((getattr(pool, "_processes", None) or {}).values())  # no public API before Python 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.join(timeout=30)


def run_submitit(runs: Sequence[tuple[RunSpec, Config]], folder: Path, options: SubmititOptions) -> list[str | None]:
    """Submit one ``submitit`` job per run and wait for all; the error (or None) of each run, in order.

    Raises:
        ImportError: ``submitit`` is not installed (``pip install -r requirements-dev.txt``).
    """
    jobs = submit([RunJob(spec, cfg) for spec, cfg in runs], folder, options, name="ablation")
    for (spec, _), job in zip(runs, jobs, strict=True):
        logger.info("%s seed %d: job %s (logs in %s)", spec.name, spec.seed, job.job_id, folder)
    return [_outcome(job.result) for job in jobs]


def _outcome(result: Any) -> str | None:
    """The run's error (or None), also when its worker or job itself failed."""
    try:
        value = result()
    except Exception as error:  # a crashed worker, a failed job: report it, let the other runs count
        return one_line_error(error)
    return value if isinstance(value, str) else None
