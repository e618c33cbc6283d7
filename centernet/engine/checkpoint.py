"""Checkpoints: atomic writes, safe loading and the run state needed for resume."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

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
        raise ValueError(f"checkpoint {path} is corrupt or not a checkpoint: {error}".splitlines()[0]) from error
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return state


def model_state_from_checkpoint(state: dict[str, Any], path: str | Path) -> dict[str, torch.Tensor]:
    """Return the model weights of a checkpoint of this project (``model`` entry)."""
    weights = state.get("model")
    if not isinstance(weights, dict):
        raise ValueError(f"checkpoint {path} has no 'model' weights (keys: {sorted(state)})")
    return weights
