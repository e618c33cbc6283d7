"""What a training checkpoint holds, and restoring it: the state of an exact resume.

An exact resume, even in the middle of an epoch, needs: model, optimizer, lr scheduler, AMP grad
scaler, EMA weights, the criterion's buffers (GHM-C histograms), the epoch, the global iteration, the
iterations done inside the epoch (the loader's sampler skips that many batches of the epoch's
permutation, which is itself a function of ``(seed, epoch)``) and the global RNG states. Loader
workers hold no random state of their own that matters: every augmentation draw comes from a
generator seeded by ``(seed, epoch, sample index)``, whichever worker loads the sample.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from centernet.engine.distributed import DistContext
from centernet.engine.ema import ModelEMA
from centernet.inference.trained_model import weight_differences
from centernet.utils.env import capture_rng_state, restore_rng_state

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT_VERSION = 2  # 1: resume at epoch ends only (no epoch_iter / ema / skipped_steps)


class TrainStateMixin:
    """Checkpoint (de)serialisation of :class:`centernet.engine.trainer.Trainer`."""

    dist: DistContext
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    criterion: torch.nn.Module
    ema: ModelEMA | None
    metadata: dict[str, Any]
    global_batch_size: int
    epoch: int
    max_epochs: int
    iteration: int
    epoch_iter: int
    best_metric: float
    skipped_steps: int
    skipped_samples: int

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (and to rebuild the model for inference).

        ``model`` holds the trained weights; ``ema`` (with ``solver.ema``) the averaged ones, which
        inference loaders prefer (see ``model_state_from_checkpoint``); ``metadata`` (the resolved
        config, class names, label -> category id map) is stored at the top level.
        """
        state: dict[str, Any] = {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "criterion": self.criterion.state_dict(),
            "epoch": self.epoch,
            "max_epochs": self.max_epochs,  # the plan's length (solver.min_iters may stretch solver.epochs)
            "iteration": self.iteration,
            "epoch_iter": self.epoch_iter,
            "best_metric": self.best_metric,
            "skipped_steps": self.skipped_steps,
            "skipped_samples": self.skipped_samples,
            "global_batch_size": self.global_batch_size,
            "world_size": self.dist.world_size,
            "rng": capture_rng_state(),
            **self.metadata,
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        """Restore a :meth:`state_dict` read from ``path``.

        Raises:
            ValueError: the checkpoint does not fit this model/optimizer (the message names the file).
        """
        weights = state.get("model")
        differences = weight_differences(self.model.state_dict(), weights) if isinstance(weights, dict) else ""
        if differences:
            raise ValueError(f"cannot resume from {path}: its weights do not fit this model: {differences}")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            self.criterion.load_state_dict(state.get("criterion", {}))
            if self.ema is not None:
                if "ema" in state:
                    self.ema.load_state_dict(state["ema"])
                else:
                    logger.warning("%s has no EMA weights; the average restarts from the current weights", path)
                    self.ema.load_state_dict({"model": self.model.state_dict(), "updates": 0})
            self.epoch = int(state["epoch"])
            self.iteration = int(state["iteration"])
            self.best_metric = float(state["best_metric"])
        except (KeyError, RuntimeError, ValueError, TypeError) as error:
            raise ValueError(f"cannot resume from {path}: {str(error).splitlines()[0]}") from error
        if "score_threshold" in state:  # the latest evaluation's, kept in later checkpoints
            self.metadata["score_threshold"] = float(state["score_threshold"])
        self.epoch_iter = int(state.get("epoch_iter", 0))
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self.skipped_samples = int(state.get("skipped_samples", 0))
        saved_ranks = state.get("world_size", self.dist.world_size)
        if saved_ranks != self.dist.world_size:
            logger.warning(
                "%s was written by %s ranks and resumes on %d: each rank's share of the data changes, so the "
                "resumed run is not bitwise the one it continues (exact resume needs the same number of ranks); "
                "training continues", path, saved_ranks, self.dist.world_size,
            )
        saved_batch = state.get("global_batch_size", self.global_batch_size)
        if self.epoch_iter and saved_batch != self.global_batch_size:
            logger.warning(
                "%s was saved %d iterations into an epoch with global batch %s; resuming with global batch %d "
                "does not revisit exactly the remaining samples of that epoch", path, self.epoch_iter, saved_batch,
                self.global_batch_size,
            )
        restore_rng_state(state["rng"])
