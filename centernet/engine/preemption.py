"""Stopping cleanly when a scheduler asks: a signal becomes a checkpoint at the next step boundary.

Clusters stop jobs with a signal and, a grace period later, SIGKILL: SLURM sends SIGTERM at preemption
and time-out (and the signal of ``--signal=USR1@90`` ahead of the time limit), Kubernetes and ``torchrun``
send SIGTERM, a terminal sends SIGINT. The handlers installed by :class:`StopHook` only set a flag; the
hook checks it after every step and every epoch (all ranks agree through one all-reduce), rank 0 writes a
mid-epoch checkpoint holding everything an exact resume needs (:mod:`centernet.engine.train_state`), and
:class:`TrainingStopped` ends ``Trainer.fit``. The tools exit with ``128 + signal number`` (143 for
SIGTERM, 130 for SIGINT, 138 for SIGUSR1), the shell's code for "ended by that signal"; rerunning the same
command with ``--auto-resume`` continues from that step (docs/failures.md, "Preemption").

A second signal while stopping changes nothing (the stop completes); a signal during an evaluation or a
checkpoint write waits for it to finish, so no file is ever left half written.

Inside a ``submitit`` job (SLURM, or its local executor) the job's preemption signal (``SIGUSR2``, or
``SUBMITIT_PREEMPT_SIGNAL``) is caught instead, and once the checkpoint is written it is handed on to
submitit's own handler, which calls the job's ``checkpoint()`` and requeues it: the requeued job resumes
from that step. SIGTERM stays with submitit there (it ignores it, so that the requeue can finish).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any

from centernet.engine.distributed import any_rank
from centernet.engine.hooks import HookBase

logger = logging.getLogger(__name__)

STOP_SIGNAL_NAMES = ("SIGTERM", "SIGINT", "SIGUSR1", "SIGUSR2", "SIGHUP")
DEFAULT_STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1")
SIGNAL_EXIT_BASE = 128  # a process ended by signal N exits with 128 + N (the shell's convention)
SUBMITIT_EXECUTOR_VARIABLE = "SUBMITIT_EXECUTOR"  # set by submitit in its jobs
SUBMITIT_SIGNAL_VARIABLE = "SUBMITIT_PREEMPT_SIGNAL"  # submitit's preemption signal, USR2 by default


def submitit_signal() -> int | None:
    """The preemption signal of the ``submitit`` job this process runs in (None outside one)."""
    if not os.environ.get(SUBMITIT_EXECUTOR_VARIABLE):
        return None
    return int(getattr(signal, "SIG" + os.environ.get(SUBMITIT_SIGNAL_VARIABLE, "USR2")))


class TrainingStopped(Exception):  # noqa: N818 - a requested stop, not an error
    """Training stopped at a step boundary because of ``signum``; the checkpoint to resume from is ``checkpoint``."""

    def __init__(self, signum: int, epoch: int, epoch_iter: int, iteration: int, checkpoint: str) -> None:
        self.signum, self.epoch, self.iteration, self.checkpoint = signum, epoch, iteration, checkpoint
        where = f"end of epoch {epoch}" if epoch_iter == 0 else f"epoch {epoch + 1}, {epoch_iter} into it"
        super().__init__(
            f"stopped by {signal.Signals(signum).name} after iteration {iteration} ({where}); checkpoint "
            f"{checkpoint}; rerun the same command with --auto-resume to continue"
        )

    @property
    def exit_code(self) -> int:
        """``128 + signum``."""
        return SIGNAL_EXIT_BASE + self.signum


def signal_numbers(names: Sequence[str]) -> list[int]:
    """The numbers of ``names`` (``SIGTERM``...).

    Raises:
        ValueError: a name outside :data:`STOP_SIGNAL_NAMES`.
    """
    unknown = [name for name in names if name not in STOP_SIGNAL_NAMES]
    if unknown:
        raise ValueError(f"runtime.stop_signals: {', '.join(unknown)} not allowed; choose from "
                         f"{', '.join(STOP_SIGNAL_NAMES)}")
    return [int(getattr(signal, name)) for name in names]


class StopRequest:
    """Signal handlers that only record the first signal received (safe at any bytecode).

    Args:
        signals: the signal numbers to catch.
    """

    def __init__(self, signals: Sequence[int]) -> None:
        self.signals = list(signals)
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> bool:
        """Catch the signals (main thread only: elsewhere Python cannot; returns whether it did)."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handle)
        return True

    def previous(self, signum: int) -> Any:
        """The handler ``signum`` had before :meth:`install`."""
        return self._previous.get(signum)

    def restore(self) -> None:
        """Put the handlers that were there before :meth:`install` back."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum


class StopHook(HookBase):
    """Checks for a stop request after every step and epoch; on one, checkpoints and raises :class:`TrainingStopped`.

    Register it after the :class:`~centernet.engine.hooks.CheckpointHook`, so that an epoch-end checkpoint
    already written is not written twice.

    Args:
        signals: the signal numbers that ask for a stop.
        hand_over: signals whose earlier handler is called once the checkpoint is written (submitit's
            checkpoint-and-requeue handler); the others end training with :class:`TrainingStopped`.
    """

    def __init__(self, signals: Sequence[int], hand_over: Sequence[int] = ()) -> None:
        self.request = StopRequest(signals)
        self.hand_over = set(hand_over)

    def before_train(self) -> None:
        if not self.request.install():
            logger.debug("not in the main thread: stop signals are not caught")

    def after_train(self) -> None:
        self.request.restore()

    def after_step(self) -> None:
        self._check()

    def after_epoch(self) -> None:
        self._check()

    def _check(self) -> None:
        trainer = self.trainer
        local = self.request.signum
        if not any_rank(local is not None, trainer.device):
            return
        signum = local if local is not None else int(signal.SIGTERM)  # a peer rank's signal
        checkpoint = self._save()
        previous = self.request.previous(signum)
        if signum in self.hand_over and callable(previous):
            logger.info("checkpoint %s written; %s handed to the job's own handler (requeue)", checkpoint,
                        signal.Signals(signum).name)
            previous(signum, None)  # submitit: checkpoint() and requeue, then it ends the process
        raise TrainingStopped(signum, trainer.epoch, trainer.epoch_iter, trainer.iteration, checkpoint)

    def _save(self) -> str:
        """Rank 0: write the checkpoint of this iteration unless the epoch end already did; returns its path."""
        trainer = self.trainer
        store = trainer.store
        if store is None:
            return "none (no checkpoint folder)"
        path = store.path_for(trainer.iteration)
        if trainer.is_main and not path.exists():
            store.save(trainer.state_dict(), trainer.iteration)
        return str(path)
