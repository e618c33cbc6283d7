"""Turning exceptions into the one-line messages the command-line tools print."""

from __future__ import annotations

WORKER_TRACEBACK_MARKER = "Original Traceback"


def one_line_error(error: BaseException) -> str:
    """A single line describing ``error``.

    Exceptions re-raised by a DataLoader worker carry the worker's whole traceback in their message;
    the last line of it (``ExceptionType: message``) is the informative one. A ``KeyError`` shows its
    message, not the quoted ``repr`` Python gives it.
    """
    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
        text = error.args[0].strip() or type(error).__name__
    else:
        text = str(error).strip() or type(error).__name__
    if WORKER_TRACEBACK_MARKER in text:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-1]
    return " ".join(text.split())
