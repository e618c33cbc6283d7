"""The training loop: one step = normalise + render targets on the device + forward + loss + update."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from centernet.config import Config, config_to_dict, save_config
from centernet.data.build import build_dataset, build_loader
from centernet.engine.build import build_criterion, build_model
from centernet.engine.checkpoint import load_checkpoint, save_checkpoint
from centernet.engine.evaluator import evaluate_model
from centernet.engine.inference import ImageNormalizer, autocast_context
from centernet.engine.logging import MetricsLogger
from centernet.engine.optim import build_optimizer, build_scheduler
from centernet.targets import render_targets
from centernet.utils.env import (
    capture_rng_state,
    cpu_has_fast_bf16,
    environment_info,
    restore_rng_state,
    seed_everything,
    select_device,
)

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT_VERSION = 1
BEST_METRIC = {"coco": "AP", "voc07": "mAP", "voc": "mAP"}  # eval.metric -> the key ranking checkpoints


class Trainer:
    """Trains and evaluates a CenterNet detector as described by a :class:`Config`.

    Args:
        cfg: the validated config.
        work_dir: run folder (config.yaml, env.json, metrics.jsonl, checkpoints/, tb/, eval/).
        resume: ``None`` = fresh run; ``True`` = ``work_dir/checkpoints/last.pth``; a path = that checkpoint.
        progress: show tqdm progress bars.
    """

    def __init__(
        self, cfg: Config, work_dir: Path, *, resume: bool | str | Path | None = None, progress: bool = True
    ) -> None:
        self.cfg = cfg
        self.work_dir = Path(work_dir)
        self.progress = progress
        if cfg.runtime.threads > 0:
            torch.set_num_threads(cfg.runtime.threads)
        if cfg.runtime.deterministic:
            torch.use_deterministic_algorithms(True)
        self.device = select_device(cfg.runtime.device)
        self.amp = cfg.runtime.amp
        if self.amp == "bf16" and self.device.type == "cpu" and not cpu_has_fast_bf16():
            logger.warning("runtime.amp=bf16 on a CPU without native bfloat16 (AVX512-BF16/AMX) is slow; "
                           "consider runtime.amp=off")
        seed_everything(cfg.runtime.seed)

        self.train_set = build_dataset(cfg, "train")
        self.val_set = build_dataset(cfg, "val")
        if len(self.train_set) == 0:
            raise ValueError(f"data.train ({cfg.data.train}) has no images")
        pin = self.device.type == "cuda"
        self.train_loader = build_loader(cfg, self.train_set, "train", pin_memory=pin)
        self.val_loader = build_loader(cfg, self.val_set, "val", pin_memory=pin)
        self.num_classes = len(self.train_set.class_names)

        memory_format = torch.channels_last if cfg.runtime.channels_last else torch.preserve_format
        self.model = build_model(cfg, self.num_classes).to(self.device)
        self.model.to(memory_format=memory_format)
        self.criterion = build_criterion(cfg).to(self.device)
        self.normalizer = ImageNormalizer(cfg.data.mean, cfg.data.std, channels_last=cfg.runtime.channels_last)
        self.normalizer.to(self.device)
        self.optimizer = build_optimizer(self.model.parameters(), cfg.solver)
        self.iters_per_epoch = len(self.train_loader)
        self.scheduler = build_scheduler(self.optimizer, cfg.solver, self.iters_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == "fp16")

        self.epoch = 0  # completed epochs
        self.iteration = 0  # completed optimizer steps
        self.best_metric = -math.inf
        self.last_metrics: dict[str, Any] | None = None
        if resume:
            self._resume(self.work_dir / "checkpoints" / "last.pth" if resume is True else Path(resume))

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
            "training %s on %s: %d train / %d val images, %d classes, %d epochs x %d iterations",
            self.cfg.model.backbone.type,
            self.device,
            len(self.train_set),
            len(self.val_set),
            self.num_classes,
            total,
            self.iters_per_epoch,
        )
        started = time.perf_counter()
        try:
            while self.epoch < total:
                self.train_one_epoch()
                self._end_epoch_hooks()
                self.epoch += 1
                metrics = self.evaluate() if self._should_evaluate() else None
                self.last_metrics = metrics or self.last_metrics
                self._save_checkpoints(metrics)
        finally:
            self.metrics_logger.close()
        logger.info(
            "finished %d epochs in %.1f min; logs in %s (tensorboard --logdir %s)",
            total,
            (time.perf_counter() - started) / 60,
            self.work_dir,
            self.work_dir / "tb",
        )
        return self.last_metrics

    def train_one_epoch(self) -> None:
        """One pass over the training loader (epoch number ``self.epoch``, 0-based)."""
        self.train_set.set_epoch(self.epoch)
        self.train_loader.sampler.set_epoch(self.epoch)  # type: ignore[attr-defined]
        self.model.train()
        sums: dict[str, torch.Tensor] = {}
        count = 0
        last_log = time.perf_counter()
        bar = tqdm(
            self.train_loader,
            total=self.iters_per_epoch,
            disable=not self.progress,
            dynamic_ncols=True,
            desc=f"epoch {self.epoch + 1}/{self.cfg.solver.epochs}",
        )
        for step, batch in enumerate(bar):
            losses = self.train_step(batch)
            for name, value in losses.items():
                sums[name] = sums.get(name, 0) + value.detach()
            count += 1
            is_last = step + 1 == self.iters_per_epoch
            if self.iteration % self.cfg.runtime.log_interval == 0 or is_last:
                record: dict[str, Any] = {name: float(total / count) for name, total in sums.items()}  # one host sync
                self._check_finite(record)
                now = time.perf_counter()
                record.update(
                    lr=self.optimizer.param_groups[0]["lr"],
                    time_per_iter=(now - last_log) / count,
                )
                histogram = self._gradient_norm_histogram()
                if histogram is not None:
                    record["ghm_bin_counts"] = histogram[1]
                    self.metrics_logger.log_histogram("train/ghm_gradient_norm", *histogram, step=self.iteration)
                self.metrics_logger.log(
                    {"type": "train", "epoch": self.epoch + 1, "iter": self.iteration, **record},
                    step=self.iteration,
                    prefix="train",
                )
                bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}")
                sums, count, last_log = {}, 0, now

    def train_step(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Forward, loss and update on one collated batch; returns the loss terms and their sum (``loss``)."""
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
            outputs = self.model(images)
        losses = self.criterion(outputs, targets)
        loss = torch.stack(list(losses.values())).sum()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.solver.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.solver.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.iteration += 1
        return {"loss": loss, **losses}

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

    def _check_finite(self, record: Mapping[str, float]) -> None:
        bad = {name: value for name, value in record.items() if not math.isfinite(value)}
        if bad:
            last = self.work_dir / "checkpoints" / "last.pth"
            raise FloatingPointError(
                f"non-finite loss at epoch {self.epoch + 1}, iteration {self.iteration}: {bad}; "
                f"last good checkpoint: {last if last.exists() else 'none'}"
            )

    # ---------------------------------------------------------------- evaluation
    def _should_evaluate(self) -> bool:
        interval = self.cfg.eval.interval
        last = self.epoch >= self.cfg.solver.epochs
        return last or (interval > 0 and self.epoch % interval == 0)

    def evaluate(self) -> dict[str, Any]:
        """Evaluate the current model on the validation set and log/write the results."""
        metrics = evaluate_model(
            self.model,
            self.val_set,
            self.val_loader,
            self.normalizer,
            device=self.device,
            topk=self.cfg.eval.topk,
            flip=self.cfg.eval.flip,
            amp=self.amp,
            metric=self.cfg.eval.metric,
            backend=self.cfg.eval.backend,
            out_dir=self.work_dir / "eval",
            progress=self.progress,
        )
        scalars = {k: v for k, v in metrics.items() if isinstance(v, float)}
        self.metrics_logger.log(
            {"type": "val", "epoch": self.epoch, "iter": self.iteration, **scalars}, step=self.iteration, prefix="val"
        )
        return metrics

    # --------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (and to rebuild the model for inference)."""
        return {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "criterion": self.criterion.state_dict(),
            "epoch": self.epoch,
            "iteration": self.iteration,
            "best_metric": self.best_metric,
            "rng": capture_rng_state(),
            "config": config_to_dict(self.cfg),
            "class_names": list(self.train_set.class_names),
            "label_to_category_id": list(self.train_set.label_to_category_id),
        }

    def _save_checkpoints(self, metrics: Mapping[str, Any] | None) -> None:
        """Write ``last.pth`` and, when ``metrics`` beat the best so far, ``best.pth``."""
        folder = self.work_dir / "checkpoints"
        best_key = BEST_METRIC[self.cfg.eval.metric]
        metric = None if metrics is None else metrics.get(best_key)
        is_best = metric is not None and metric > self.best_metric
        if metric is not None and is_best:
            self.best_metric = float(metric)
        state = self.state_dict()
        if is_best:
            save_checkpoint(state, folder / "best.pth")
            logger.info("new best %s %.4f at epoch %d -> %s", best_key, metric, self.epoch, folder / "best.pth")
        save_checkpoint(state, folder / "last.pth")

    def _resume(self, path: Path) -> None:
        state = load_checkpoint(path, map_location=self.device)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            self.criterion.load_state_dict(state.get("criterion", {}))
        except (KeyError, RuntimeError, ValueError) as error:
            raise ValueError(f"cannot resume from {path}: {str(error).splitlines()[0]}") from error
        self.epoch = int(state["epoch"])
        self.iteration = int(state["iteration"])
        self.best_metric = float(state["best_metric"])
        restore_rng_state(state["rng"])
        logger.info("resumed from %s at epoch %d (iteration %d)", path, self.epoch, self.iteration)
