"""LossStatisticsHook: the epoch-mean training loss it passes to end_epoch, and the fields it logs."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch

from centernet.engine.hooks import LossStatisticsHook, StepResult
from centernet.losses import EpochStatistics


class RecordingLoss:
    """An EpochStatistics that records the losses it is closed with."""

    def __init__(self) -> None:
        self.closed: list[float | None] = []

    def histogram(self) -> tuple[list[float], list[int]]:
        return [0.0, 0.5, 1.0], [3, 1]

    def record_fields(self) -> dict[str, Any]:
        return {"ghm_switch_epoch": 1} if self.closed else {}

    def end_epoch(self, epoch_loss: float | None = None) -> None:
        self.closed.append(epoch_loss)


def step(heatmap: float, *, skipped: bool = False, key: str = "heatmap") -> StepResult:
    losses = {key: torch.tensor(heatmap), "loss": torch.tensor(heatmap + 10.0)}
    return StepResult(batch={}, outputs=None, targets={}, losses=losses, skipped=skipped)


def test_epoch_mean_skips_skipped_steps_and_resets() -> None:
    loss = RecordingLoss()
    assert isinstance(loss, EpochStatistics)
    hook = LossStatisticsHook(loss, None)
    hook.trainer = SimpleNamespace(device=torch.device("cpu"), epoch=1, iteration=0, last_step=None)  # type: ignore[assignment]
    hook.before_train()
    for result in (step(1.0), step(100.0, skipped=True), step(3.0)):
        hook.trainer.last_step = result
        hook.after_step()
    assert hook.record_fields() == {"ghm_bin_counts": [3, 1]}
    hook.after_epoch()
    assert loss.closed == [2.0]  # (1 + 3) / 2: the skipped step does not count
    assert hook.record_fields() == {"ghm_bin_counts": [3, 1], "ghm_switch_epoch": 1}
    hook.after_epoch()  # an epoch without steps: the loss is unknown
    assert loss.closed == [2.0, None]
    hook.trainer.last_step = step(5.0, key="other")  # no heatmap term: the total loss counts
    hook.after_step()
    hook.after_epoch()
    assert loss.closed[-1] == 15.0
