"""Choosing what a training command does with its run folder, before anything is written to it.

A second ``tools/train.py`` into a folder that already holds a run would mix two runs (a second epoch-1
record in ``metrics.jsonl``, two starts in ``run.log``, replaced checkpoints), so :func:`plan_run_dir`
refuses it unless the user says what to do: ``--resume`` (continue it), ``--work-dir`` (another folder),
``--overwrite`` (move the old run aside to ``<folder>.old-<timestamp>``; nothing is deleted) or
``--auto-resume`` (report a finished run, resume an interrupted one, start otherwise; what ``make demo``
uses). See ``docs/training.md``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from centernet.engine.checkpoint import CheckpointStore, load_checkpoint
from centernet.utils.output_dirs import existing_results, move_aside

if TYPE_CHECKING:
    from centernet.engine.trainer import Trainer

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = Path("checkpoints") / "last.pth"
EVAL_DIR = Path("eval")
METRICS_NAME = "metrics.json"
SUMMARY_KEYS = ("AP", "AP50", "AP75", "AR100", "mAP")  # printed for a finished run


class RunDirNotEmptyError(ValueError):
    """The run folder already holds a run and the command did not say what to do with it."""


@dataclass(frozen=True)
class RunDirPlan:
    """What to do with the run folder.

    Attributes:
        resume: the Trainer's ``resume`` argument (``None``: a fresh run).
        finished: the folder holds a finished run; nothing to train (``--auto-resume``).
        moved_to: where an earlier run was moved (``--overwrite``, or ``--auto-resume`` without checkpoints).
    """

    resume: bool | str | None
    finished: bool = False
    moved_to: Path | None = None


def final_metrics_files(work_dir: Path, val_sets: list[str] | None) -> list[Path]:
    """Where a run writes its evaluation metrics: ``eval/metrics.json``, or ``eval/<set>/metrics.json``
    for each named validation set (``val_sets``, see ``val_set_names``)."""
    if val_sets is None:
        return [work_dir / EVAL_DIR / METRICS_NAME]
    return [work_dir / EVAL_DIR / name / METRICS_NAME for name in val_sets]


def _int_entry(state: dict[str, Any], key: str) -> int | None:
    value = state.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def checkpoint_progress(path: Path, epochs: int) -> tuple[int, int] | None:
    """``(completed epochs, planned epochs)`` of a checkpoint (None without the file or an integer ``epoch``).

    The planned epochs are the checkpoint's ``max_epochs``: the training plan's length, which
    ``solver.min_iters`` can make longer than ``solver.epochs``. Checkpoints written before the plan was
    stored fall back to ``epochs`` (the config's ``solver.epochs``).
    """
    if not path.is_file():
        return None
    state = load_checkpoint(path)
    done = _int_entry(state, "epoch")
    if done is None:
        return None
    return done, _int_entry(state, "max_epochs") or epochs


def completed_epochs(work_dir: Path) -> int | None:
    """``epoch`` of ``checkpoints/last.pth`` (None without a readable one)."""
    progress = checkpoint_progress(work_dir / LAST_CHECKPOINT, 0)
    return None if progress is None else progress[0]


def plan_run_dir(work_dir: Path, *, epochs: int, resume: bool | str | None, overwrite: bool, auto_resume: bool,
                 val_sets: list[str] | None = None, is_main: bool = True) -> RunDirPlan:
    """Decide (and on rank 0 do) what happens to ``work_dir`` before training.

    Args:
        work_dir: the run folder.
        epochs: ``solver.epochs`` of the config; a run is finished when its checkpoint completed the planned
            epochs (see :func:`checkpoint_progress`) and every evaluation metrics file exists.
        resume: ``--resume`` (True or a path) or None.
        overwrite: ``--overwrite``: move an earlier run aside.
        auto_resume: ``--auto-resume``.
        val_sets: the names of the validation sets (None: one unnamed set); says where metrics are written.
        is_main: rank 0 (only rank 0 checks and moves; every rank reads the same checkpoint).

    Raises:
        RunDirNotEmptyError: the folder holds files and none of the flags says what to do.
    """
    if resume:
        return RunDirPlan(resume=resume)
    if auto_resume:
        return _auto_resume(work_dir, epochs, val_sets, is_main)
    contents = existing_results(work_dir) if is_main else []
    if not contents:
        return RunDirPlan(resume=None)
    if overwrite:
        return RunDirPlan(resume=None, moved_to=move_aside(work_dir))
    listed = ", ".join(contents[:4]) + (", ..." if len(contents) > 4 else "")
    raise RunDirNotEmptyError(
        f"{work_dir} already holds a run ({listed}); add --resume to continue it, --work-dir DIR to train "
        f"into another folder, or --overwrite to move it aside to {work_dir.name}.old-<timestamp>"
    )


def newest_readable_progress(work_dir: Path, epochs: int) -> tuple[int, int] | None:
    """:func:`checkpoint_progress` of the newest readable checkpoint of ``work_dir``: ``last.pth``, else the
    ``iter_*.pth`` files newest first (a truncated or corrupt newest file is skipped with a warning, as the
    resume itself does)."""
    store = CheckpointStore(work_dir / LAST_CHECKPOINT.parent, keep=1)
    for path in store.candidates():
        try:
            return checkpoint_progress(path, epochs)
        except ValueError as error:
            logger.warning("%s; trying an older checkpoint", error)
    return None


def _auto_resume(work_dir: Path, epochs: int, val_sets: list[str] | None, is_main: bool) -> RunDirPlan:
    progress = newest_readable_progress(work_dir, epochs)
    metrics_written = all(path.is_file() for path in final_metrics_files(work_dir, val_sets))
    if progress is not None and progress[0] >= progress[1] and metrics_written:
        return RunDirPlan(resume=None, finished=True)
    if progress is not None:
        return RunDirPlan(resume=True)
    if is_main and existing_results(work_dir):  # a start that never reached a checkpoint
        return RunDirPlan(resume=None, moved_to=move_aside(work_dir))
    return RunDirPlan(resume=None)


def finished_run_summary(work_dir: Path, val_sets: list[str] | None = None) -> str:
    """The main metrics of a finished run, one part per metrics file (see :func:`final_metrics_files`)."""
    lines = []
    for path in final_metrics_files(work_dir, val_sets):
        metrics: dict[str, Any] = json.loads(path.read_text())
        shown = [f"{key} {metrics[key]:.4f}" for key in SUMMARY_KEYS if isinstance(metrics.get(key), int | float)]
        lines.append(f"{', '.join(shown) or 'no metrics'} ({path})")
    return "; ".join(lines)


def complete_run(trainer: Trainer) -> dict[str, Any] | None:
    """Train the epochs left; a resumed run that completed its epochs but not its final evaluation (stopped
    in between) only evaluates. Returns the latest metrics."""
    if trainer.epoch >= trainer.max_epochs:
        trainer.evaluate()
    return trainer.fit()  # with no epoch left, fit only runs the hooks that close the logs
