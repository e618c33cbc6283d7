"""Output folders and files that never replace an earlier result unasked.

- :func:`existing_results` lists what an output folder already holds, so a tool can refuse to write into
  it (one line offering a new folder or an explicit flag);
- :func:`move_aside` renames a folder to ``<name>.old-<YYYYmmdd-HHMMSS>`` instead of deleting it;
- :func:`default_file_mode` / :func:`apply_default_mode`: files written through a temporary file get
  the mode an ordinary ``open()`` would give them (``0666`` minus the umask), not ``mkstemp``'s ``0600``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

OLD_SUFFIX = ".old-"
TIMESTAMP_FORMAT = "%Y%m%d-%H%M%S"
DEFAULT_FILE_MODE = 0o666


def existing_results(folder: Path, names: Iterable[str] | None = None) -> list[str]:
    """The entries of ``folder`` (only those among ``names`` when given), sorted; ``[]`` when it is absent."""
    if not folder.is_dir():
        return []
    present = sorted(entry.name for entry in folder.iterdir())
    return present if names is None else [name for name in present if name in set(names)]


def move_aside(folder: Path) -> Path:
    """Rename ``folder`` to ``<folder>.old-<timestamp>`` (``-2``, ``-3``, ... when taken); returns the new path."""
    base = folder.with_name(f"{folder.name}{OLD_SUFFIX}{time.strftime(TIMESTAMP_FORMAT)}")
    target, number = base, 1
    while target.exists():
        number += 1
        target = base.with_name(f"{base.name}-{number}")
    folder.rename(target)
    return target


def default_file_mode() -> int:
    """``0666`` without the bits of the process umask (what ``open(path, "w")`` would create)."""
    mask = os.umask(0)
    os.umask(mask)
    return DEFAULT_FILE_MODE & ~mask


def apply_default_mode(path: Path) -> None:
    """Give ``path`` (e.g. written through ``tempfile.mkstemp``, mode 0600) the default file mode."""
    os.chmod(path, default_file_mode())
