"""Name -> factory registries for the model components (backbones, necks).

A registry is a plain ``dict`` from a name to a factory, with a ``register`` decorator and a helpful
error for an unknown name: it lists the valid names and suggests close matches.

Factory contracts (what :func:`centernet.models.detector.build_centernet` relies on):

- ``BACKBONES[name](*, weights: str | None) -> nn.Module``: ``forward(images FloatTensor[B, 3, H, W])
  -> list[FloatTensor]`` of feature maps, finest first, the last ``[B, out_channels, H / stride, W / stride]``;
  the module exposes ``out_channels: int``, ``stride: int`` and ``feature_channels: tuple[int, ...]``, and
  optionally ``size_divisor: int`` (input sides must be multiples of it; default ``stride``) and
  ``num_stacks: int`` (a stacked backbone such as the hourglass: its last ``num_stacks`` maps are one per
  stack, each gets the neck and its own head; default 1).
- ``NECKS[name](*, feature_channels: Sequence[int], channels: Sequence[int]) -> nn.Module``:
  ``forward(features: list[FloatTensor]) -> FloatTensor[B, out_channels, h * f, w * f]`` where ``h, w`` is
  the size of the last map and ``f = upsample_factor``; the module exposes ``out_channels: int`` and
  ``upsample_factor: int``.

Registering a new backbone or neck: decorate its factory with ``@BACKBONES.register("name")`` in a module
that ``centernet.models`` imports (``centernet/models/backbones/__init__.py`` for backbones).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Generic, TypeVar

from torch import nn

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


BACKBONES: Registry[Callable[..., nn.Module]] = Registry("backbone")
NECKS: Registry[Callable[..., nn.Module]] = Registry("neck")
