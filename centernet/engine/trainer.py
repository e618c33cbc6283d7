"""The training loop: one step = normalise + render targets on the device + forward + loss + update.

Single process or DDP (``torchrun``): every rank builds the same model, trains on its shard of each
global batch and evaluates its shard of the validation set; rank 0 alone writes logs, evaluation
files and checkpoints. Checkpoints (:meth:`Trainer.state_dict`) hold everything an exact resume needs,
including the position inside the epoch.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from centernet.config import Config, save_config
from centernet.data.build import EpochIndexSampler, build_dataset, build_loader
from centernet.data.normalize import ImageNormalizer
from centernet.engine.checkpoint import CheckpointStore, load_checkpoint, save_checkpoint
from centernet.engine.distributed import all_reduce_sum, any_rank, init_distributed
from centernet.engine.ema import ModelEMA
from centernet.engine.guards import allow_skipped_step, check_finite_losses, check_finite_weights
from centernet.engine.logging import MetricsLogger
from centernet.engine.optim import build_optimizer, build_scheduler, scaled_lr
from centernet.engine.sync_bn import convert_sync_batchnorm
from centernet.engine.train_state import TrainStateMixin
from centernet.engine.visual_logging import log_training_visuals, should_log_visuals
from centernet.inference.evaluator import evaluate_model
from centernet.losses import GHMC
from centernet.losses.build import build_criterion
from centernet.models.build import build_model
from centernet.targets import render_targets
from centernet.utils.amp import autocast_context
from centernet.utils.env import cpu_has_fast_bf16, environment_info, seed_everything

logger = logging.getLogger(__name__)


class Trainer(TrainStateMixin):
    """Trains and evaluates a CenterNet detector as described by a :class:`Config`.

    Args:
        cfg: the validated config.
        work_dir: run folder (config.yaml, env.json, metrics.jsonl, checkpoints/, tb/, eval/).
        resume: ``None`` = fresh run; ``True`` = the newest readable checkpoint of ``work_dir/checkpoints``
            (``last.pth``, else the previous ones, with a warning); a path = that checkpoint.
        progress: show tqdm progress bars (rank 0).
    """

    def __init__(
        self, cfg: Config, work_dir: Path, *, resume: bool | str | Path | None = None, progress: bool = True
    ) -> None:
        self.cfg = cfg
        self.work_dir = Path(work_dir)
        if cfg.runtime.threads > 0:
            torch.set_num_threads(cfg.runtime.threads)
        if cfg.runtime.deterministic:
            torch.use_deterministic_algorithms(True)
        self.dist = init_distributed(cfg.runtime.device)
        self.device = self.dist.device
        self.progress = progress and self.dist.is_main
        self.amp = cfg.runtime.amp
        if self.amp == "bf16" and self.device.type == "cpu" and not cpu_has_fast_bf16():
            logger.warning("runtime.amp=bf16 on a CPU without native bfloat16 (AVX512-BF16/AMX) is slow; "
                           "consider runtime.amp=off")
        seed_everything(cfg.runtime.seed)  # the same on every rank: identical initial weights

        self.train_set = build_dataset(cfg, "train")
        self.val_set = build_dataset(cfg, "val")
        if len(self.train_set) == 0:
            source = getattr(cfg.data.train, "ann_file", "") or getattr(cfg.data.train, "root", "")
            bad = len(self.train_set.bad_samples)
            raise ValueError(f"data.train has no usable images: {source} ({bad} dropped as bad samples)")
        self.bad_annotation_images = len(self.train_set.bad_samples)
        pin = self.device.type == "cuda"
        rank, world = self.dist.rank, self.dist.world_size
        self.train_loader = build_loader(cfg, self.train_set, "train", rank=rank, world_size=world, pin_memory=pin)
        self.val_loader = build_loader(cfg, self.val_set, "val", rank=rank, world_size=world, pin_memory=pin)
        self.num_classes = len(self.train_set.class_names)

        memory_format = torch.channels_last if cfg.runtime.channels_last else torch.preserve_format
        model: torch.nn.Module = build_model(cfg, self.num_classes)
        if cfg.runtime.sync_bn and self.dist.distributed:
            model = convert_sync_batchnorm(model, self.device)
        self.model = model.to(self.device).to(memory_format=memory_format)
        self.train_model: torch.nn.Module = self.model
        if self.dist.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=device_ids)
        self.criterion = build_criterion(cfg).to(self.device)
        if self.dist.distributed:
            self.criterion.all_reduce_sum = all_reduce_sum
            self.criterion.world_size = world
            if isinstance(self.criterion.heatmap_loss, GHMC):
                self.criterion.heatmap_loss.reduce_counts = all_reduce_sum  # global gradient-density histogram
        self.normalizer = ImageNormalizer(cfg.data.mean, cfg.data.std, channels_last=cfg.runtime.channels_last)
        self.normalizer.to(self.device)
        self.global_batch_size = cfg.data.batch_size * world
        self.base_lr = scaled_lr(cfg.solver, self.global_batch_size)
        self.optimizer = build_optimizer(
            self.model.parameters(), cfg.solver, lr=self.base_lr,
            backbone_params=self.model.get_submodule("backbone").parameters(),
        )
        self.iters_per_epoch = len(self.train_loader)
        self.scheduler = build_scheduler(self.optimizer, cfg.solver, self.iters_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == "fp16")
        self.ema = (
            ModelEMA(self.model, decay=cfg.solver.ema_decay, warmup_iters=cfg.solver.ema_warmup_iters)
            if cfg.solver.ema
            else None
        )
        self.store = CheckpointStore(self.work_dir / "checkpoints", keep=cfg.runtime.keep_checkpoints)

        self.epoch = 0  # completed epochs
        self.iteration = 0  # completed iterations (batches consumed, skipped steps included)
        self.epoch_iter = 0  # iterations completed inside the current epoch
        self.best_metric = -math.inf
        self.skipped_steps = 0  # non-finite steps skipped (solver.skip_nonfinite_steps)
        self.skipped_samples = 0  # unreadable images replaced (data.on_bad_sample: skip)
        self.last_metrics: dict[str, Any] | None = None
        if resume:
            self._resume(resume)

        self.metrics_logger: MetricsLogger | None = None
        if self.dist.is_main:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.work_dir / "config.yaml")
            (self.work_dir / "env.json").write_text(json.dumps(environment_info(self.device), indent=2))
            self.metrics_logger = MetricsLogger(self.work_dir)

    # ------------------------------------------------------------------ training
    def fit(self) -> dict[str, Any] | None:
        """Train until ``solver.epochs``, evaluating every ``eval.interval`` epochs and after the last.

        Returns:
            The metrics of the last evaluation (``None`` if none ran).
        """
        total = self.cfg.solver.epochs
        logger.info(
            "training %s on %s x %d: %d train / %d val images, %d classes, %d epochs x %d iterations, "
            "global batch %d, lr %.3g (solver.lr %.3g, reference batch %s)",
            self.cfg.model.backbone.type, self.device, self.dist.world_size, len(self.train_set),
            len(self.val_set), self.num_classes, total, self.iters_per_epoch, self.global_batch_size,
            self.base_lr, self.cfg.solver.lr, self.cfg.solver.reference_batch_size or "not set",
        )
        started = time.perf_counter()
        try:
            while self.epoch < total:
                self.train_one_epoch()
                self._end_epoch_hooks()
                self.epoch += 1
                self.epoch_iter = 0
                metrics = self.evaluate() if self._should_evaluate() else None
                self.last_metrics = metrics or self.last_metrics
                self._save_checkpoints(metrics)
        finally:
            if self.metrics_logger is not None:
                self.metrics_logger.close()
        logger.info(
            "finished %d epochs in %.1f min; logs in %s (tensorboard --logdir %s)",
            total, (time.perf_counter() - started) / 60, self.work_dir, self.work_dir / "tb",
        )
        return self.last_metrics

    def train_one_epoch(self) -> None:
        """The rest of epoch ``self.epoch`` (0-based), from iteration ``self.epoch_iter`` of it."""
        self.train_set.set_epoch(self.epoch)
        sampler = self.train_loader.sampler
        assert isinstance(sampler, EpochIndexSampler)
        sampler.set_epoch(self.epoch, start=self.epoch_iter * self.cfg.data.batch_size)
        self.train_model.train()
        sums: dict[str, torch.Tensor] = {}
        count = 0
        last_log = time.perf_counter()
        bar = tqdm(
            self.train_loader,
            total=self.iters_per_epoch,
            initial=self.epoch_iter,
            disable=not self.progress,
            dynamic_ncols=True,
            desc=f"epoch {self.epoch + 1}/{self.cfg.solver.epochs}",
        )
        for batch in bar:
            self._count_skipped_samples(batch)
            skipped_before = self.skipped_steps
            losses = self.train_step(batch)
            if self.skipped_steps == skipped_before:  # skipped steps stay out of the logged means
                for name, value in losses.items():
                    sums[name] = sums.get(name, 0) + value.detach()
                count += 1
            self.epoch_iter += 1
            is_last = self.epoch_iter == self.iters_per_epoch
            if self.iteration % self.cfg.runtime.log_interval == 0 or is_last:
                record = self._reduce_for_logging(sums, count) if count else {}
                check_finite_losses(
                    record, epoch=self.epoch + 1, iteration=self.iteration, last_checkpoint=self._last_good_checkpoint()
                )
                now = time.perf_counter()
                record.update(lr=self.optimizer.param_groups[0]["lr"], time_per_iter=(now - last_log) / max(count, 1))
                self._log_train(record, batch)
                bar.set_postfix(loss=f"{record.get('loss', math.nan):.3f}", lr=f"{record['lr']:.2e}")
                sums, count, last_log = {}, 0, now
            interval = self.cfg.runtime.checkpoint_interval
            if interval > 0 and self.iteration % interval == 0 and not is_last:
                self._save_checkpoints(None)  # mid-epoch: last.pth only

    def train_step(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Forward, loss and update on one collated batch; returns the loss terms and their sum (``loss``).

        With ``solver.skip_nonfinite_steps > 0`` the loss is checked on every step (one host sync);
        a non-finite loss on any rank skips the update on all ranks (see :func:`allow_skipped_step`): no
        parameter, EMA or lr-schedule change, but the batch counts as an iteration.
        """
        device = self.device
        images = self.normalizer(batch["images"].to(device, non_blocking=True))
        output_h, output_w = (s // self.cfg.data.down_ratio for s in images.shape[-2:])
        targets = render_targets(
            batch["boxes"].to(device, non_blocking=True) / self.cfg.data.down_ratio,
            batch["labels"].to(device, non_blocking=True),
            batch["valid"].to(device, non_blocking=True),
            ignore=batch["ignore"].to(device, non_blocking=True),
            num_classes=self.num_classes,
            output_size=(output_h, output_w),
            radius_formula=self.cfg.target.radius,
            min_overlap=self.cfg.target.min_overlap,
        )
        with autocast_context(device, self.amp):
            outputs = self.train_model(images)
        losses = self.criterion(outputs, targets)
        if self.metrics_logger is not None and should_log_visuals(self.iteration, self.cfg.runtime.vis_interval):
            last_stack = outputs[-1] if isinstance(outputs, list) else outputs  # stacked hourglass: the last one
            log_training_visuals(self.metrics_logger.writer, step=self.iteration, batch=batch, outputs=last_stack,
                                 targets=targets, channel_order=self.cfg.data.channel_order,
                                 down_ratio=self.cfg.data.down_ratio)
        loss = torch.stack(list(losses.values())).sum()
        self.optimizer.zero_grad(set_to_none=True)
        skip = self.cfg.solver.skip_nonfinite_steps > 0 and any_rank(not bool(torch.isfinite(loss)), device)
        if skip:
            self.skipped_steps += 1
            allow_skipped_step(
                losses, skipped=self.skipped_steps, allowed=self.cfg.solver.skip_nonfinite_steps,
                epoch=self.epoch + 1, iteration=self.iteration + 1, last_checkpoint=self._last_good_checkpoint(),
            )
        else:
            self.scaler.scale(loss).backward()
            if self.cfg.solver.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.solver.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.ema is not None:
                self.ema.update(self.model)
            self.scheduler.step()
        self.iteration += 1
        return {"loss": loss, **losses}

    def _count_skipped_samples(self, batch: Mapping[str, Any]) -> None:
        """Add the unreadable images the loader replaced in ``batch`` (``data.on_bad_sample: skip``)."""
        skipped = [message for meta in batch["metas"] for message in meta.get("skipped", ())]
        if skipped:
            self.skipped_samples += len(skipped)
            logger.warning("skipped %d unreadable image(s) so far; latest: %s", self.skipped_samples, skipped[-1])

    def _reduce_for_logging(self, sums: Mapping[str, torch.Tensor], count: int) -> dict[str, Any]:
        """Window means of the loss terms, averaged over ranks (one all-reduce, one host sync)."""
        names = list(sums)
        means = all_reduce_sum(torch.stack([sums[name] / count for name in names])) / self.dist.world_size
        record: dict[str, Any] = dict(zip(names, means.tolist(), strict=True))
        return record

    def _log_train(self, record: dict[str, Any], batch: Mapping[str, Any]) -> None:
        """Write one training record (rank 0): loss terms, lr, counters, GHM-C histogram.

        Args:
            record: the reduced loss terms, ``lr`` and ``time_per_iter``.
            batch: the last training batch (for image summaries).
        """
        if self.metrics_logger is None:
            return
        if self.skipped_steps:
            record["skipped_steps"] = self.skipped_steps
        if self.skipped_samples or self.bad_annotation_images:
            record["skipped_samples"] = self.skipped_samples + self.bad_annotation_images
        histogram = self._gradient_norm_histogram()
        if histogram is not None:
            record["ghm_bin_counts"] = histogram[1]
            self.metrics_logger.log_histogram("train/ghm_gradient_norm", *histogram, step=self.iteration)
        self.metrics_logger.log(
            {"type": "train", "epoch": self.epoch + 1, "iter": self.iteration, **record},
            step=self.iteration,
            prefix="train",
        )

    def _gradient_norm_histogram(self) -> tuple[list[float], list[int]] | None:
        """GHM-C's bin edges and element counts of the last batch, or None for other heatmap losses."""
        loss = self.criterion.heatmap_loss
        counts = getattr(loss, "last_bin_counts", None)
        edges = getattr(loss, "edges", None)
        if counts is None or edges is None:
            return None
        return [float(e) for e in edges.tolist()], [int(c) for c in counts.tolist()]

    def _end_epoch_hooks(self) -> None:
        """Let stateful losses close the epoch (GHM-C ``density: epoch`` swaps its histograms)."""
        end_epoch = getattr(self.criterion.heatmap_loss, "end_epoch", None)
        if callable(end_epoch):
            end_epoch()

    def _last_good_checkpoint(self) -> str:
        return str(self.store.last) if self.store.last.exists() else "none"

    # ---------------------------------------------------------------- evaluation
    def _should_evaluate(self) -> bool:
        interval = self.cfg.eval.interval
        last = self.epoch >= self.cfg.solver.epochs
        return last or (interval > 0 and self.epoch % interval == 0)

    def evaluate(self) -> dict[str, Any]:
        """Evaluate the current model (its EMA with ``solver.ema``) on the validation set, sharded over
        the ranks; rank 0 logs and writes the results. Every rank returns the metrics."""
        metrics = evaluate_model(
            self.ema.module if self.ema is not None else self.model,
            self.val_set,
            self.val_loader,
            self.normalizer,
            device=self.device,
            topk=self.cfg.eval.topk,
            flip=self.cfg.eval.flip,
            amp=self.amp,
            metric=self.cfg.eval.metric,
            backend=self.cfg.eval.backend,
            out_dir=self.work_dir / "eval" if self.dist.is_main else None,
            progress=self.progress,
        )
        if self.metrics_logger is not None:
            scalars = {k: v for k, v in metrics.items() if isinstance(v, float)}
            self.metrics_logger.log(
                {"type": "val", "epoch": self.epoch, "iter": self.iteration, **scalars},
                step=self.iteration,
                prefix="val",
            )
        return metrics

    # --------------------------------------------------------------- checkpoints
    def _save_checkpoints(self, metrics: Mapping[str, Any] | None) -> None:
        """Rank 0: write ``last.pth`` (rotated history) and, when ``metrics`` beat the best, ``best.pth``.

        Raises:
            FloatingPointError: the weights are no longer finite (nothing is written).
        """
        best_key = self.best_metric_key()
        metric = None if metrics is None else metrics.get(best_key)
        is_best = metric is not None and metric > self.best_metric
        if metric is not None and is_best:
            self.best_metric = float(metric)
        if not self.dist.is_main:
            return
        check_finite_weights(
            self.model, epoch=self.epoch + 1, iteration=self.iteration, last_checkpoint=self._last_good_checkpoint()
        )
        state = self.state_dict()
        if is_best:
            save_checkpoint(state, self.store.folder / "best.pth")
            logger.info("new best %s %.4f at epoch %d -> %s", best_key, metric, self.epoch, self.store.folder)
        self.store.save(state, self.iteration)

    def _resume(self, resume: bool | str | Path) -> None:
        # read on the CPU (RNG states must stay CPU tensors); load_state_dict copies onto the device
        if isinstance(resume, bool):
            state, path = self.store.load_latest(map_location="cpu")
        else:
            path = Path(resume)
            state = load_checkpoint(path, map_location="cpu")
        self.load_state_dict(state, path)
        logger.info(
            "resumed from %s at epoch %d, iteration %d (%d into the epoch)", path, self.epoch + 1, self.iteration,
            self.epoch_iter,
        )
