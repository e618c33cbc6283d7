"""The training loop: one step = normalise + render targets on the device + forward + loss + update.

:class:`Trainer` takes built objects (model, criterion, loader, optimizer, scheduler, target renderer)
and reads no config; :meth:`Trainer.from_config` (:func:`centernet.engine.build.build_trainer`) is the
one place that turns a :class:`~centernet.config.Config` into them. Everything besides optimising —
logging, TensorBoard images, loss statistics, evaluation, checkpoints — is a hook
(:mod:`centernet.engine.hooks`). Single process or DDP (``torchrun``): every rank runs the same loop
on its shard of each global batch; only rank 0 writes. Checkpoints (:meth:`Trainer.state_dict`) hold
everything an exact resume needs, including the position inside the epoch.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from centernet.config import Config
from centernet.data.normalize import ImageNormalizer
from centernet.engine.checkpoint import CheckpointStore
from centernet.engine.distributed import DistContext, any_rank
from centernet.engine.ema import ModelEMA
from centernet.engine.guards import allow_skipped_step
from centernet.engine.hooks import EvalHook, HookBase, StepResult
from centernet.engine.train_state import TrainStateMixin
from centernet.utils.amp import autocast_context

logger = logging.getLogger(__name__)

TargetRenderer = Callable[[Mapping[str, Any], tuple[int, int], torch.device], dict[str, torch.Tensor]]
"""``(batch, input (height, width), device) -> targets``: what the criterion compares the outputs with."""


class Trainer(TrainStateMixin):
    """Trains a detector: ``fit()`` runs epochs of :meth:`train_step` and calls the hooks.

    Args:
        model: the detector (on ``device``); its ``backbone`` submodule is not required.
        criterion: ``criterion(outputs, targets) -> {term: FloatTensor[]}``, summed into the loss.
        train_loader: a sized iterable of collated batches (``images`` uint8 ``[B, 3, H, W]``, ``boxes``,
            ``labels``, ``valid``, ``ignore``, ``metas``): a ``DataLoader`` whose sampler and dataset
            may have ``set_epoch``, or simply a list of batches.
        optimizer, scheduler: stepped once per iteration (the scheduler counts iterations).
        targets: renders the targets of a batch on the device (:data:`TargetRenderer`).
        normalizer: uint8 images -> normalised float images.
        max_epochs: epochs to train.
        hooks: called in this order (see :class:`~centernet.engine.hooks.HookBase`).
        train_model: what the forward pass calls (the DDP wrapper of ``model``; default ``model``).
        dist: rank / world size / device (default: one CPU process).
        amp: ``off`` | ``fp16`` | ``bf16`` autocast of the forward pass.
        scaler: the fp16 grad scaler (default: a disabled one).
        ema: an exponential moving average of the weights, updated after every step.
        grad_clip: max gradient norm (``None``: no clipping).
        skip_nonfinite_steps: non-finite steps skipped before stopping (0: stop at the first).
        store: where checkpoints go (``None``: nowhere).
        metadata: stored in every checkpoint (config, class names, label map).
        progress: show a tqdm bar (rank 0).
    """

    def __init__(
        self,
        model: nn.Module,
        criterion: nn.Module,
        train_loader: Iterable[Mapping[str, Any]] | torch.utils.data.DataLoader,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        *,
        targets: TargetRenderer,
        normalizer: ImageNormalizer,
        max_epochs: int,
        hooks: Sequence[HookBase] = (),
        train_model: nn.Module | None = None,
        dist: DistContext | None = None,
        amp: str = "off",
        scaler: torch.amp.GradScaler | None = None,
        ema: ModelEMA | None = None,
        grad_clip: float | None = None,
        skip_nonfinite_steps: int = 0,
        store: CheckpointStore | None = None,
        metadata: Mapping[str, Any] | None = None,
        progress: bool = True,
    ) -> None:
        self.model, self.criterion, self.train_loader = model, criterion, train_loader
        self.optimizer, self.scheduler = optimizer, scheduler
        self.targets, self.normalizer, self.max_epochs = targets, normalizer, max_epochs
        self.train_model = train_model if train_model is not None else model
        self.dist = dist if dist is not None else DistContext()
        self.device = self.dist.device
        self.amp, self.ema, self.grad_clip = amp, ema, grad_clip
        self.scaler = scaler if scaler is not None else torch.amp.GradScaler(self.device.type, enabled=False)
        self.skip_nonfinite_steps = skip_nonfinite_steps
        self.store, self.metadata = store, dict(metadata or {})
        self.progress = progress and self.dist.is_main
        self.iters_per_epoch = len(train_loader)  # type: ignore[arg-type]
        self.batch_size = int(getattr(train_loader, "batch_size", None) or 1)
        self.global_batch_size = self.batch_size * self.dist.world_size
        self.epoch = 0  # completed epochs
        self.iteration = 0  # completed iterations (batches consumed, skipped steps included)
        self.epoch_iter = 0  # iterations completed inside the current epoch
        self.best_metric = -math.inf
        self.skipped_steps = 0  # non-finite steps skipped (solver.skip_nonfinite_steps)
        self.skipped_samples = 0  # unreadable images replaced (data.on_bad_sample: skip)
        self.bad_annotation_images = 0  # images dropped while reading the annotations
        self.last_metrics: dict[str, Any] | None = None  # of the latest evaluation
        self.epoch_metrics: dict[str, Any] | None = None  # of this epoch's evaluation, if one ran
        self.last_step: StepResult | None = None
        self._bar: tqdm | None = None
        self.hooks: list[HookBase] = []
        self.register_hooks(hooks)

    @classmethod
    def from_config(
        cls, cfg: Config, work_dir: Path, *, resume: bool | str | Path | None = None, progress: bool = True
    ) -> Trainer:
        """Build datasets, loaders, model, criterion, optimizer, schedule and hooks from ``cfg``.

        Args:
            cfg: the validated config.
            work_dir: run folder (config.yaml, env.json, metrics.jsonl, checkpoints/, tb/, eval/).
            resume: ``None`` = fresh run; ``True`` = the newest readable checkpoint of
                ``work_dir/checkpoints`` (with a warning when falling back); a path = that checkpoint.
            progress: show tqdm progress bars (rank 0).
        """
        from centernet.engine.build import build_trainer  # the builder imports this module

        return build_trainer(cfg, Path(work_dir), resume=resume, progress=progress)

    def register_hooks(self, hooks: Sequence[HookBase]) -> None:
        """Append ``hooks`` (called after the ones already registered)."""
        for hook in hooks:
            hook.trainer = self
            self.hooks.append(hook)

    # ------------------------------------------------------------------ the loop
    @property
    def world_size(self) -> int:
        """Number of processes training together."""
        return self.dist.world_size

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes."""
        return self.dist.is_main

    def fit(self) -> dict[str, Any] | None:
        """Train until ``max_epochs``; returns the metrics of the last evaluation (``None`` if none ran)."""
        started = time.perf_counter()
        for hook in self.hooks:
            hook.before_train()
        try:
            while self.epoch < self.max_epochs:
                self.train_one_epoch()
                self.epoch += 1
                self.epoch_iter = 0
                self.epoch_metrics = None
                for hook in self.hooks:
                    hook.after_epoch()
        finally:
            for hook in self.hooks:
                hook.after_train()
        logger.info("finished %d epochs in %.1f min", self.max_epochs, (time.perf_counter() - started) / 60)
        return self.last_metrics

    def train_one_epoch(self) -> None:
        """The rest of epoch ``self.epoch`` (0-based), from iteration ``self.epoch_iter`` of it."""
        self._set_loader_epoch()
        self.train_model.train()
        self._bar = tqdm(self.train_loader, total=self.iters_per_epoch, initial=self.epoch_iter,
                         disable=not self.progress, dynamic_ncols=True,
                         desc=f"epoch {self.epoch + 1}/{self.max_epochs}")
        for batch in self._bar:
            losses = self.train_step(batch)
            self.epoch_iter += 1
            assert self.last_step is not None
            self.last_step.losses = losses
            for hook in self.hooks:
                hook.after_step()

    def train_step(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Forward, loss and update on one collated batch; returns the loss terms and their sum (``loss``).

        With ``skip_nonfinite_steps > 0`` the loss is checked on every step (one host sync); a
        non-finite loss on any rank skips the update on all ranks (see :func:`allow_skipped_step`): no
        parameter, EMA or lr-schedule change, but the batch counts as an iteration.
        """
        images = self.normalizer(batch["images"].to(self.device, non_blocking=True))
        targets = self.targets(batch, (images.shape[-2], images.shape[-1]), self.device)
        with autocast_context(self.device, self.amp):
            outputs = self.train_model(images)
        losses = self.criterion(outputs, targets)
        loss = torch.stack(list(losses.values())).sum()
        self.optimizer.zero_grad(set_to_none=True)
        skip = self.skip_nonfinite_steps > 0 and any_rank(not bool(torch.isfinite(loss)), self.device)
        if skip:
            self.skipped_steps += 1
            allow_skipped_step(losses, skipped=self.skipped_steps, allowed=self.skip_nonfinite_steps,
                               epoch=self.epoch + 1, iteration=self.iteration + 1,
                               last_checkpoint=self.last_good_checkpoint())
        else:
            self._update(loss)
        self.iteration += 1
        terms = {"loss": loss, **losses}
        self.last_step = StepResult(batch=batch, outputs=outputs, targets=targets, losses=terms, skipped=skip)
        return terms

    def _update(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()
        if self.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)
        self.scheduler.step()

    def _set_loader_epoch(self) -> None:
        """Tell the dataset (augmentation seeds) and the sampler (permutation, start) which epoch runs."""
        dataset_set_epoch = getattr(getattr(self.train_loader, "dataset", None), "set_epoch", None)
        if callable(dataset_set_epoch):
            dataset_set_epoch(self.epoch)
        sampler_set_epoch = getattr(getattr(self.train_loader, "sampler", None), "set_epoch", None)
        if callable(sampler_set_epoch):
            sampler_set_epoch(self.epoch, start=self.epoch_iter * self.batch_size)

    # ------------------------------------------------------------- for the hooks
    def set_progress(self, **fields: str) -> None:
        """Show ``fields`` next to the progress bar."""
        if self._bar is not None:
            self._bar.set_postfix(**fields)

    def last_good_checkpoint(self) -> str:
        """The newest checkpoint on disk, for error messages (``none`` without one)."""
        return str(self.store.last) if self.store is not None and self.store.last.exists() else "none"

    def evaluate(self) -> dict[str, Any]:
        """Run the evaluation hook now (all ranks); returns its metrics."""
        for hook in self.hooks:
            if isinstance(hook, EvalHook):
                return hook.run()
        raise RuntimeError("this trainer has no EvalHook")

    def resume(self, resume: bool | str | Path) -> Path:
        """Restore the state of ``resume`` (``True``: the newest readable checkpoint of the store)."""
        from centernet.engine.checkpoint import load_checkpoint

        # read on the CPU (RNG states must stay CPU tensors); load_state_dict copies onto the device
        if isinstance(resume, bool):
            if self.store is None:
                raise ValueError("cannot resume: this trainer has no checkpoint folder")
            state, path = self.store.load_latest(map_location="cpu")
        else:
            path = Path(resume)
            state = load_checkpoint(path, map_location="cpu")
        self.load_state_dict(state, path)
        logger.info("resumed from %s at epoch %d, iteration %d (%d into the epoch)", path, self.epoch + 1,
                    self.iteration, self.epoch_iter)
        return path
