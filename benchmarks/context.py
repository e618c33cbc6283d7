"""The state shared by the benchmark rows of one run: the size preset and a scratch folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Context:
    """Settings of one benchmark run.

    Attributes:
        quick: tiny sizes and few repetitions (CI smoke run; the figures mean nothing).
        scratch: a temporary folder for the rows' files (synthetic images, JSON, work dirs).
    """

    quick: bool
    scratch: Path

    def pick(self, full: object, quick: object) -> object:
        """``quick`` in quick mode, else ``full``."""
        return quick if self.quick else full
