"""A name -> factory registry with a helpful error for unknown names.

A registry is a plain ``dict`` from a name to a factory, with a ``register`` decorator; looking up an
unknown name raises :class:`UnknownNameError` listing the valid names and suggesting close matches.
Used for backbones and necks (:mod:`centernet.models.registry`), heatmap losses and detection merges.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., object])

_MAX_SUGGESTIONS = 3


class UnknownNameError(KeyError):
    """Raised for a name that is not in a registry; ``str()`` is the plain one-line message."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Registry(dict[str, T], Generic[T]):
    """A ``dict`` from component name to factory with a helpful error for unknown names.

    Args:
        kind: what the registry holds, used in error messages (e.g. ``"backbone"``).
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[F], F]:
        """Return a decorator that registers a factory under ``name``.

        Args:
            name: the name configs use to select the factory.

        Returns:
            A decorator returning the factory unchanged.

        Raises:
            ValueError: if ``name`` is already registered.
        """

        def decorator(factory: F) -> F:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is already registered (by {self[name]!r})")
            self[name] = factory  # type: ignore[assignment]
            return factory

        return decorator

    def __missing__(self, name: str) -> T:
        valid = ", ".join(sorted(self)) or "(none registered)"
        close = difflib.get_close_matches(str(name), list(self), n=_MAX_SUGGESTIONS)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownNameError(f"unknown {self.kind} {name!r}: valid names are {valid}{hint}")

