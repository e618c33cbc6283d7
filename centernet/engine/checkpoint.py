"""Checkpoints: atomic writes, safe loading and the run state needed for resume."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from centernet.utils.output_dirs import apply_default_mode

logger = logging.getLogger(__name__)


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically.

    The file is written to a temporary file in the same folder, flushed and fsynced, then renamed
    over ``path``; a failure at any point leaves the previous file untouched.

    Raises:
        OSError: the write failed (disk full, permissions); the message names the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        apply_default_mode(Path(tmp_name))
        os.replace(tmp_name, path)
    except BaseException as error:
        Path(tmp_name).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise OSError(error.errno, f"could not write checkpoint {path}: {error.strerror or error}") from error
        raise


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (no arbitrary code from the file).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is truncated, corrupt or not a checkpoint (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for corrupt / foreign files
        reason = str(error).splitlines()[0].split(". ")[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"checkpoint {path} is corrupt or not a checkpoint: {reason}") from error
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return state


def model_state_from_checkpoint(
    state: dict[str, Any], path: str | Path, *, prefer_ema: bool = True
) -> dict[str, torch.Tensor]:
    """Return the model weights for inference: the EMA weights (``ema``) when present, else ``model``.

    Args:
        state: a checkpoint of this project (see ``Trainer.state_dict``).
        path: its file (named in errors).
        prefer_ema: take the ``ema`` entry (``solver.ema: true`` runs) when it exists.
    """
    ema = state.get("ema")
    if prefer_ema and isinstance(ema, dict) and isinstance(ema.get("model"), dict):
        return ema["model"]
    weights = state.get("model")
    if not isinstance(weights, dict):
        raise ValueError(f"checkpoint {path} has no 'model' weights (keys: {sorted(state)})")
    return weights


class CheckpointStore:
    """The ``checkpoints/`` folder of a run: ``last.pth`` plus the newest ``keep`` ``iter_*.pth`` files.

    Each save writes ``iter_<iteration>.pth`` atomically (temp file, fsync, rename) and then points
    ``last.pth`` at the same file (a hard link, replaced atomically; a copy where links are not
    supported), so ``last.pth`` is always a complete checkpoint. Older ``iter_*.pth`` files beyond
    ``keep`` are deleted. :meth:`load_latest` falls back to the next newest file when the newest is
    truncated or corrupt.

    Args:
        folder: the checkpoint folder.
        keep: number of ``iter_*.pth`` files kept (>= 1).
    """

    LAST = "last.pth"
    PATTERN = "iter_*.pth"

    def __init__(self, folder: str | Path, *, keep: int) -> None:
        if keep < 1:
            raise ValueError(f"runtime.keep_checkpoints must be >= 1, got {keep}")
        self.folder = Path(folder)
        self.keep = keep

    @property
    def last(self) -> Path:
        """``folder/last.pth``."""
        return self.folder / self.LAST

    def history(self) -> list[Path]:
        """The ``iter_*.pth`` files, newest (highest iteration) first."""
        return sorted(self.folder.glob(self.PATTERN), key=lambda p: p.stem, reverse=True)

    def path_for(self, iteration: int) -> Path:
        """``folder/iter_<iteration>.pth`` (nine digits), where :meth:`save` writes that iteration."""
        return self.folder / f"iter_{iteration:09d}.pth"

    def save(self, state: dict[str, Any], iteration: int) -> Path:
        """Write ``state`` as ``iter_<iteration>.pth`` and ``last.pth``; prune old files.

        Returns:
            The ``iter_*.pth`` path.

        Raises:
            OSError: the write failed (the message names the file); earlier files are intact.
        """
        path = self.path_for(iteration)
        save_checkpoint(state, path)
        _replace_with_link(path, self.last)
        for old in self.history()[self.keep :]:
            old.unlink(missing_ok=True)
        return path

    def candidates(self) -> list[Path]:
        """Files to resume from, best first: ``last.pth`` then the history, newest first."""
        return [p for p in (self.last, *self.history()) if p.is_file()]

    def load_latest(self, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], Path]:
        """Load the newest readable checkpoint, warning about each unreadable newer one.

        Raises:
            FileNotFoundError: the folder holds no checkpoint.
            ValueError: every checkpoint in it is corrupt (the message names them).
        """
        candidates = self.candidates()
        if not candidates:
            raise FileNotFoundError(f"no checkpoint to resume from in {self.folder}")
        problems = []
        for path in candidates:
            try:
                return load_checkpoint(path, map_location=map_location), path
            except ValueError as error:
                logger.warning("%s; trying the previous checkpoint", error)
                problems.append(str(path))
        raise ValueError(f"no readable checkpoint in {self.folder}: {', '.join(problems)} are corrupt")


def _replace_with_link(source: Path, target: Path) -> None:
    """Make ``target`` the same file as ``source`` atomically (hard link, else a copy), via a temp name."""
    tmp = target.with_name(f".{target.name}.link.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)
