"""What every command-line tool in ``tools/`` shares: the argument parser, logging and the error policy.

- :func:`default_argument_parser` gives ``--config`` and trailing ``KEY=VALUE`` config overrides; options
  taking an optional or a variable number of values (``--resume [PATH]``, ``--scales 0.5 1``) never
  swallow an override written after them (:meth:`ToolArgumentParser.parse_tool_args`).
- :func:`setup_tool_logging` sends the ``centernet`` loggers to the console (and a run's ``run.log``);
  under ``torchrun`` only rank 0 logs below WARNING.
- :func:`run_tool` is the one place of the error policy: an expected error (:data:`USER_ERRORS`) becomes
  exactly one ``ERROR`` line and exit code :data:`EXIT_ERROR`; its traceback goes to the DEBUG log only.

See ``docs/failures.md`` for the errors the tools report.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from centernet.config import ConfigError
from centernet.engine.logging import setup_logging
from centernet.inference.slicing import SliceSettings
from centernet.utils.errors import one_line_error

EXIT_OK = 0
EXIT_ERROR = 1
OVERRIDES_DEST = "overrides"

USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,  # a config file, key or value (also command-line overrides)
    FileNotFoundError,  # config, annotation, image or checkpoint files
    ValueError,  # bad values, corrupt files, a checkpoint that does not fit
    OSError,  # disk full, permissions
    KeyError,  # an unknown registry name (backbone, neck, loss)
    TypeError,  # a component given parameters it does not take
    RuntimeError,  # a device that is not there, torch refusing an input
    FloatingPointError,  # training diverged (non-finite loss or weights)
    ImportError,  # an optional package a chosen option needs (e.g. submitit)
)
"""The exceptions a tool reports as one line; anything else is a bug and keeps its traceback."""

_OVERRIDE_PATTERN = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*=")


def is_override(item: object) -> bool:
    """Whether a command-line word reads as a ``dotted.key=value`` override (and is not an existing path)."""
    return isinstance(item, str) and bool(_OVERRIDE_PATTERN.match(item)) and not Path(item).exists()


class ToolArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that hands ``KEY=VALUE`` words back to the overrides.

    argparse gives the words after ``--resume`` (optional value) or ``--scales`` (one or more values)
    to that option, overrides included; :meth:`parse_tool_args` moves such words to ``overrides`` in
    command-line order (an optional value falls back to the option's ``const``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._kept: dict[str, Callable[[str], bool]] = {}

    def keep_words(self, dest: str, keep: Callable[[str], bool]) -> None:
        """Leave the ``KEY=VALUE`` words of option ``dest`` for which ``keep`` holds with that option (e.g.
        ``--tune solver.lr=[...]``: a bracketed list is a search axis, any other override is an override)."""
        self._kept[dest] = keep

    @property
    def _greedy(self) -> dict[str, argparse.Action]:
        """The options taking a variable number of values (also those added to argument groups)."""
        return {action.dest: action for action in self._actions
                if action.option_strings and action.nargs in ("?", "*", "+")}

    def parse_tool_args(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        """Parse ``argv`` (default ``sys.argv[1:]``), then give swallowed overrides back to ``overrides``."""
        words = list(sys.argv[1:] if argv is None else argv)
        args = self.parse_intermixed_args(words)
        if not hasattr(args, OVERRIDES_DEST):
            return args
        greedy = self._greedy
        reclaimed = [item for dest, action in greedy.items() for item in self._reclaim(args, dest, action)]
        if reclaimed:
            wanted = Counter([*reclaimed, *getattr(args, OVERRIDES_DEST)])
            ordered = []
            for word in words:
                if wanted[word] > 0:
                    wanted[word] -= 1
                    ordered.append(word)
            setattr(args, OVERRIDES_DEST, ordered)
        return args

    def _reclaim(self, args: argparse.Namespace, dest: str, action: argparse.Action) -> list[str]:
        """Take the override words out of option ``dest``; returns them."""
        value = getattr(args, dest)
        keep = self._kept.get(dest, lambda _word: False)
        if isinstance(value, str) and is_override(value) and not keep(value):
            setattr(args, dest, action.const)
            return [value]
        if not isinstance(value, list):
            return []
        taken = [item for item in value if is_override(item) and not keep(item)]
        kept = [item for item in value if item not in taken]
        if taken and not kept and action.nargs == "+":
            self.error(f"{'/'.join(action.option_strings)}: expected at least one value before {taken[0]}")
        if taken:
            setattr(args, dest, kept)
        return taken


def default_argument_parser(description: str | None, *, config: str = "required", overrides: bool = True,
                            config_help: str = "experiment YAML file") -> ToolArgumentParser:
    """The parser every tool starts from.

    Args:
        description: the tool's module docstring (shown by ``--help``, formatting kept).
        config: ``required`` | ``optional`` (e.g. the config stored in a checkpoint is the default) | ``none``.
        overrides: add the trailing ``KEY=VALUE`` config overrides.
        config_help: the ``--help`` text of ``--config``.
    """
    parser = ToolArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    if config != "none":
        parser.add_argument("--config", required=config == "required", help=config_help)
    if overrides:
        parser.add_argument(
            OVERRIDES_DEST, nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. solver.lr=2.5e-4"
        )
    return parser


def is_main_process() -> bool:
    """Rank 0 under ``torchrun`` (``RANK`` unset: a plain single process)."""
    return int(os.environ.get("RANK", "0")) == 0


def setup_tool_logging(work_dir: Path | None = None, *, level: int = logging.INFO) -> None:
    """Console logging at ``level`` (and everything into ``work_dir/run.log``); other ranks: warnings only."""
    if is_main_process():
        setup_logging(work_dir, level=level)
    else:
        setup_logging(None, level=max(level, logging.WARNING))


def report_error(error: BaseException, logger: logging.Logger, prefix: str = "") -> None:
    """Log ``error`` as one ``ERROR`` line (its traceback at DEBUG level: ``run.log`` only)."""
    logger.error("%s%s", prefix, one_line_error(error))
    logger.debug("traceback of the error above", exc_info=error)


def run_tool(body: Callable[[], int | None], logger: logging.Logger,
             cleanup: Callable[[], None] | None = None) -> int:
    """Run a tool's work: its exit code (``None`` = :data:`EXIT_OK`), or :data:`EXIT_ERROR` after one
    ``ERROR`` line for a :data:`USER_ERRORS` exception. ``cleanup`` runs in every case."""
    try:
        code = body()
    except USER_ERRORS as error:
        report_error(error, logger)
        return EXIT_ERROR
    finally:
        if cleanup is not None:
            cleanup()
    return EXIT_OK if code is None else code


def add_slice_arguments(parser: argparse.ArgumentParser) -> None:
    """``--slice SIZE [--overlap F] [--slice-scale S] [--full-image] [--slice-batch N]``: sliced inference
    (:mod:`centernet.inference.slicing`); read back with :func:`slice_from_args`."""
    group = parser.add_argument_group("sliced inference (images larger than the network input)")
    group.add_argument("--slice", type=int, default=None, metavar="SIZE",
                       help="run overlapping windows of SIZE image pixels (network input: SIZE x --slice-scale, "
                            "a multiple of the model's stride); 0 = whole images, also where the config slices")
    group.add_argument("--overlap", type=float, default=0.2, help="share of a window its neighbours also cover")
    group.add_argument("--slice-scale", type=float, default=1.0, help="network pixels per image pixel")
    group.add_argument("--full-image", action="store_true",
                       help="also run the whole image at the model's input size (objects larger than a window)")
    group.add_argument("--slice-batch", type=int, default=0,
                       help="windows per forward pass (default 0: 1 on a CPU, 16 on a GPU)")


def slice_from_args(args: argparse.Namespace) -> SliceSettings | None:
    """The :class:`SliceSettings` of :func:`add_slice_arguments`' options, ``None`` without ``--slice`` (or
    with ``--slice 0``).

    Raises:
        ValueError: a bad value (the message names the option).
    """
    if not args.slice:
        return None
    try:
        return SliceSettings(size=args.slice, overlap=args.overlap, scale=args.slice_scale,
                             full_image=args.full_image, batch_size=args.slice_batch)
    except ValueError as error:
        raise ValueError(f"--slice {args.slice} --overlap {args.overlap:g} --slice-scale {args.slice_scale:g}: "
                         f"{error}") from None
