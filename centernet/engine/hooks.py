"""Hooks: what the training loop does besides optimising (logging, images, evaluation, checkpoints).

A hook subclasses :class:`HookBase` and overrides any of ``before_train``, ``after_step``,
``after_epoch`` and ``after_train``; :class:`centernet.engine.trainer.Trainer` calls them in the order
of its ``hooks`` list, each with ``self.trainer`` set. A hook reads the trainer's counters
(``epoch``, ``iteration``, ``epoch_iter``, ``iters_per_epoch``) and the last step
(``trainer.last_step``: batch, outputs, targets, losses, whether the update was skipped). Adding one:
see ``docs/architecture.md``, "Adding a hook".
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from centernet.engine.checkpoint import save_checkpoint
from centernet.engine.distributed import all_reduce_sum
from centernet.engine.guards import check_finite_losses, check_finite_weights
from centernet.engine.logging import MetricsLogger
from centernet.engine.visual_logging import log_training_visuals, should_log_visuals
from centernet.losses.base import EpochStatistics

if TYPE_CHECKING:
    from centernet.engine.trainer import Trainer

logger = logging.getLogger(__name__)

SECONDS_PER_MINUTE = 60.0


@dataclass
class StepResult:
    """What one training step saw and produced (``trainer.last_step``).

    Attributes:
        batch: the collated batch (``images`` uint8 ``[B, 3, H, W]``, ``boxes``, ``valid``, ``metas``...).
        outputs: the model output (a dict of maps, or a list of them for stacked models).
        targets: the rendered targets of the batch.
        losses: the weighted loss terms and their sum ``loss`` (float32 scalars).
        skipped: the update was skipped (non-finite loss, ``solver.skip_nonfinite_steps``).
    """

    batch: Mapping[str, Any]
    outputs: Any
    targets: Mapping[str, torch.Tensor]
    losses: dict[str, torch.Tensor]
    skipped: bool


class HookBase:
    """Base class of training hooks; every method is a no-op."""

    trainer: Trainer

    def before_train(self) -> None:
        """Called once before the first (or resumed) iteration."""

    def after_step(self) -> None:
        """Called after every iteration (``trainer.iteration`` already counts it)."""

    def after_epoch(self) -> None:
        """Called after every epoch (``trainer.epoch`` already counts it)."""

    def after_train(self) -> None:
        """Called once when training stops, also after an exception."""


class TrainLoggingHook(HookBase):
    """Window means of the loss terms every ``interval`` iterations: non-finite check, log, progress bar.

    Args:
        interval: iterations per logged record (and at the end of each epoch).
        metrics_logger: writes ``metrics.jsonl`` and TensorBoard (``None`` on ranks other than 0).
        extra: a function returning more fields for each record (e.g. loss statistics).
    """

    def __init__(self, interval: int, metrics_logger: MetricsLogger | None,
                 extra: Callable[[], dict[str, Any]] | None = None) -> None:
        self.interval = interval
        self.metrics_logger = metrics_logger
        self.extra = extra
        self.skipped_samples = 0  # unreadable images the loader replaced (data.on_bad_sample: skip)
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.last_log = time.perf_counter()

    def before_train(self) -> None:
        self.skipped_samples = self.trainer.skipped_samples
        self._reset()

    def after_step(self) -> None:
        trainer, step = self.trainer, self.trainer.last_step
        assert step is not None
        self._count_skipped_samples(step.batch)
        if not step.skipped:  # skipped steps stay out of the logged means
            for name, value in step.losses.items():
                self.sums[name] = self.sums.get(name, 0) + value.detach()
            self.count += 1
        is_last = trainer.epoch_iter == trainer.iters_per_epoch
        if trainer.iteration % self.interval and not is_last:
            return
        record = self._reduce(trainer.world_size) if self.count else {}
        check_finite_losses(record, epoch=trainer.epoch + 1, iteration=trainer.iteration,
                            last_checkpoint=trainer.last_good_checkpoint())
        now = time.perf_counter()
        time_per_iter = (now - self.last_log) / max(self.count, 1)
        record.update(lr=trainer.optimizer.param_groups[0]["lr"], time_per_iter=time_per_iter)
        self._write(record)
        trainer.set_progress(loss=f"{record.get('loss', math.nan):.3f}", lr=f"{record['lr']:.2e}")
        self._reset()

    def after_train(self) -> None:
        if self.metrics_logger is not None:
            self.metrics_logger.close()

    def _count_skipped_samples(self, batch: Mapping[str, Any]) -> None:
        skipped = [message for meta in batch["metas"] for message in meta.get("skipped", ())]
        if skipped:
            self.skipped_samples += len(skipped)
            self.trainer.skipped_samples = self.skipped_samples
            logger.warning("skipped %d unreadable image(s) so far; latest: %s", self.skipped_samples, skipped[-1])

    def _reduce(self, world_size: int) -> dict[str, Any]:
        """Window means of the loss terms, averaged over ranks (one all-reduce, one host sync)."""
        names = list(self.sums)
        means = all_reduce_sum(torch.stack([self.sums[name] / self.count for name in names])) / world_size
        return dict(zip(names, means.tolist(), strict=True))

    def _write(self, record: dict[str, Any]) -> None:
        if self.metrics_logger is None:
            return
        trainer = self.trainer
        if trainer.skipped_steps:
            record["skipped_steps"] = trainer.skipped_steps
        if trainer.skipped_samples or trainer.bad_annotation_images:
            record["skipped_samples"] = trainer.skipped_samples + trainer.bad_annotation_images
        if self.extra is not None:
            record.update(self.extra())
        self.metrics_logger.log({"type": "train", "epoch": trainer.epoch + 1, "iter": trainer.iteration, **record},
                                step=trainer.iteration, prefix="train")


class LossStatisticsHook(HookBase):
    """Statistics of a loss that keeps some (:class:`EpochStatistics`, e.g. GHM-C's gradient-norm histogram).

    Logs the histogram with every training record (``ghm_bin_counts`` in ``metrics.jsonl`` and the
    TensorBoard histogram ``train/ghm_gradient_norm``) plus the loss's own fields (``ghm_switch_epoch``
    once a ``batch_then_epoch`` density has switched), and after each epoch closes the loss's epoch
    with the epoch-mean training loss: the mean of ``losses[loss_key]`` over the epoch's steps that were
    not skipped, all-reduced over the ranks (after a mid-epoch resume, over the steps since the resume).

    Args:
        loss: the loss holding the statistics.
        metrics_logger: ``None`` on ranks other than 0.
        loss_key: the term of ``trainer.last_step.losses`` averaged (``heatmap``; ``loss`` when absent).
    """

    TAG = "train/ghm_gradient_norm"

    def __init__(self, loss: EpochStatistics, metrics_logger: MetricsLogger | None, loss_key: str = "heatmap") -> None:
        self.loss = loss
        self.metrics_logger = metrics_logger
        self.loss_key = loss_key
        self._reset_epoch()

    def _reset_epoch(self) -> None:
        device = self.trainer.device if hasattr(self, "trainer") else None
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # on the device: no sync per step
        self.loss_steps = 0

    def before_train(self) -> None:
        self._reset_epoch()

    def after_step(self) -> None:
        step = self.trainer.last_step
        if step is None or step.skipped:
            return
        value = step.losses.get(self.loss_key, step.losses.get("loss"))
        if value is not None:
            self.loss_sum = self.loss_sum.to(value.device) + value.detach().double()
            self.loss_steps += 1

    def epoch_loss(self) -> float | None:
        """The epoch-mean training loss over all ranks (one all-reduce), None without steps."""
        device = self.loss_sum.device
        totals = all_reduce_sum(torch.stack([self.loss_sum, torch.tensor(float(self.loss_steps), device=device,
                                                                          dtype=torch.float64)]))
        total, steps = totals.tolist()
        return total / steps if steps > 0 else None

    def record_fields(self) -> dict[str, Any]:
        """The fields added to each training record (and the TensorBoard histogram, written here)."""
        histogram = self.loss.histogram()
        if histogram is None:
            return {}
        if self.metrics_logger is not None:
            self.metrics_logger.log_histogram(self.TAG, *histogram, step=self.trainer.iteration)
        return {"ghm_bin_counts": histogram[1], **self.loss.record_fields()}

    def after_epoch(self) -> None:
        before = self.loss.record_fields()
        self.loss.end_epoch(self.epoch_loss())
        after = self.loss.record_fields()
        if after != before:
            logger.info("epoch %d: %s", self.trainer.epoch, ", ".join(f"{k}={v}" for k, v in after.items()))
        self._reset_epoch()


class VisualLoggingHook(HookBase):
    """Training images to TensorBoard every ``interval`` iterations: input with boxes, predicted and target heatmaps.

    Args:
        interval: iterations between image summaries (0 = never).
        metrics_logger: whose TensorBoard writer receives them (``None`` on ranks other than 0).
        channel_order: ``rgb`` | ``bgr`` of the batch images.
        down_ratio: input pixels per output cell.
    """

    def __init__(self, interval: int, metrics_logger: MetricsLogger | None, *, channel_order: str,
                 down_ratio: int) -> None:
        self.interval = interval
        self.metrics_logger = metrics_logger
        self.channel_order = channel_order
        self.down_ratio = down_ratio

    def after_step(self) -> None:
        step_index = self.trainer.iteration - 1  # the step just taken, numbered from 0
        if self.metrics_logger is None or not should_log_visuals(step_index, self.interval):
            return
        step = self.trainer.last_step
        assert step is not None
        outputs = step.outputs[-1] if isinstance(step.outputs, list) else step.outputs  # stacked: the last
        log_training_visuals(self.metrics_logger.writer, step=step_index, batch=step.batch, outputs=outputs,
                             targets=step.targets, channel_order=self.channel_order, down_ratio=self.down_ratio)


class EvalHook(HookBase):
    """Evaluate every ``interval`` epochs and after the last one; rank 0 logs the scalar metrics.

    With named val sets the metrics keys are ``<set>/<metric>``; each set gets its own ``metrics.jsonl``
    record (``{"type": "val", "set": name, ...}`` with the plain metric names) and TensorBoard scalars
    ``val/<set>/<metric>`` (docs/evaluation.md).

    Args:
        evaluate: runs the evaluation (all ranks) and returns the metrics.
        interval: epochs between evaluations (0 = only after the last epoch).
        metrics_logger: ``None`` on ranks other than 0.
        sets: the names of the val sets, or ``None`` for one unnamed set.
    """

    def __init__(self, evaluate: Callable[[], dict[str, Any]], interval: int,
                 metrics_logger: MetricsLogger | None, sets: list[str] | None = None) -> None:
        self.evaluate = evaluate
        self.interval = interval
        self.metrics_logger = metrics_logger
        self.sets = sets

    def after_epoch(self) -> None:
        trainer = self.trainer
        due = trainer.epoch >= trainer.max_epochs or (self.interval > 0 and trainer.epoch % self.interval == 0)
        trainer.epoch_metrics = self.run() if due else None

    def run(self) -> dict[str, Any]:
        """Evaluate now, log the scalars and remember them as the trainer's latest metrics.

        Raises:
            FloatingPointError: the weights are no longer finite (training diverged; nothing is evaluated).
        """
        trainer = self.trainer
        # a diverged model would only write NaN boxes: say what happened instead
        check_finite_weights(trainer.model, epoch=trainer.epoch, iteration=trainer.iteration,
                             last_checkpoint=trainer.last_good_checkpoint())
        metrics = self.evaluate()
        if self.metrics_logger is not None:
            head = {"type": "val", "epoch": trainer.epoch, "iter": trainer.iteration}
            if self.sets is None:
                scalars = {k: v for k, v in metrics.items() if isinstance(v, float)}
                self.metrics_logger.log({**head, **scalars}, step=trainer.iteration, prefix="val")
            for name in self.sets or ():
                start = f"{name}/"
                scalars = {k[len(start):]: v for k, v in metrics.items()
                           if k.startswith(start) and isinstance(v, float)}
                self.metrics_logger.log({**head, "set": name, **scalars}, step=trainer.iteration, prefix=f"val/{name}")
        trainer.last_metrics = metrics
        return metrics


class CheckpointHook(HookBase):
    """``last.pth`` after every epoch and every ``interval`` iterations; ``best.pth`` when ``metric`` improves.

    Every evaluation's F1-best score threshold (``threshold_key`` of the metrics, when present) is stored
    as the checkpoint key ``score_threshold`` from then on, so ``best.pth`` keeps the one of its own
    evaluation; inference uses it as the default threshold (docs/evaluation.md).

    Args:
        metric: the key of the evaluation metrics that ranks checkpoints (``AP`` / ``mAP``, ``yell/AP``).
        interval: iterations between mid-epoch checkpoints (0 = only at epoch ends).
        minutes: also a mid-epoch checkpoint once this many minutes passed since the last one (0 = off;
            ``runtime.checkpoint_minutes``, what a cluster user sets).
        threshold_key: the metrics key of the score threshold to store (``best_f1_threshold``, ``yell/...``).
    """

    def __init__(self, metric: str, interval: int = 0, threshold_key: str = "best_f1_threshold",
                 minutes: float = 0.0) -> None:
        self.metric = metric
        self.interval = interval
        self.threshold_key = threshold_key
        self.minutes = minutes
        self._saved_at = time.monotonic()

    def after_step(self) -> None:
        trainer = self.trainer
        is_last = trainer.epoch_iter == trainer.iters_per_epoch
        every_n = self.interval > 0 and trainer.iteration % self.interval == 0
        # rank 0 alone decides on time: saving is rank 0's work and needs no other rank
        overdue = self.minutes > 0 and time.monotonic() - self._saved_at >= self.minutes * SECONDS_PER_MINUTE
        if (every_n or (overdue and trainer.is_main)) and not is_last:
            self.save(None)  # mid-epoch: last.pth only

    def after_epoch(self) -> None:
        self.save(self.trainer.epoch_metrics)

    def save(self, metrics: Mapping[str, Any] | None) -> None:
        """Rank 0: write ``last.pth`` (rotated history) and, when ``metrics`` beat the best, ``best.pth``.

        Raises:
            FloatingPointError: the weights are no longer finite (nothing is written).
        """
        trainer = self.trainer
        value = None if metrics is None else metrics.get(self.metric)
        if metrics is not None and self.metric not in metrics:
            known = ", ".join(k for k, v in metrics.items() if isinstance(v, float))
            raise ValueError(f"eval.best_metric: {self.metric!r} is not an evaluation metric (known: {known})")
        if metrics is not None and isinstance(metrics.get(self.threshold_key), float):
            trainer.metadata["score_threshold"] = float(metrics[self.threshold_key])
        is_best = value is not None and value > trainer.best_metric
        if value is not None and is_best:
            trainer.best_metric = float(value)
        if not trainer.is_main or trainer.store is None:
            return
        check_finite_weights(trainer.model, epoch=trainer.epoch + 1, iteration=trainer.iteration,
                             last_checkpoint=trainer.last_good_checkpoint())
        state = trainer.state_dict()
        self._saved_at = time.monotonic()
        if is_best:
            save_checkpoint(state, trainer.store.folder / "best.pth")
            logger.info("new best %s %.4f at epoch %d -> %s", self.metric, value, trainer.epoch, trainer.store.folder)
        trainer.store.save(state, trainer.iteration)
