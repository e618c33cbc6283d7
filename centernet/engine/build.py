"""``Trainer.from_config``: the one place that turns a config into a ready-to-fit :class:`Trainer`.

The order of the steps is part of the contract: the RNG is seeded, then datasets, loaders and the
model are built (the model's random initialisation draws from the seeded RNG), so the same config
gives the same initial weights on every rank and in every run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from centernet.config import Config, config_to_dict, save_config
from centernet.config.schema import val_set_names
from centernet.data.base import DetectionDataset
from centernet.data.build import build_dataset, build_loader, build_val_datasets
from centernet.data.normalize import ImageNormalizer
from centernet.engine.checkpoint import CheckpointStore
from centernet.engine.distributed import DistContext, all_reduce_sum, init_distributed
from centernet.engine.ema import ModelEMA
from centernet.engine.hooks import (
    CheckpointHook,
    EvalHook,
    HookBase,
    LossStatisticsHook,
    TrainLoggingHook,
    VisualLoggingHook,
)
from centernet.engine.logging import MetricsLogger
from centernet.engine.optim import TrainingPlan, build_optimizer, build_scheduler, plan_training, scaled_lr
from centernet.engine.preemption import StopHook, signal_numbers, submitit_signal
from centernet.engine.sync_bn import convert_sync_batchnorm
from centernet.engine.targets import ConfiguredTargets
from centernet.engine.trainer import Trainer
from centernet.inference.evaluator import SlicedInput, check_scorable, evaluate_model
from centernet.inference.sliced_runner import val_set_slices
from centernet.losses import CenterNetCriterion, EpochStatistics
from centernet.losses.build import build_criterion
from centernet.models.build import build_model
from centernet.utils.env import cpu_has_fast_bf16, environment_info, seed_everything

logger = logging.getLogger(__name__)

BEST_METRIC = {"coco": "AP", "voc07": "mAP", "voc": "mAP"}  # eval.metric -> the key ranking checkpoints


def _setup_runtime(cfg: Config) -> DistContext:
    """Threads, determinism, the process group and the seed, before anything random is built."""
    if cfg.runtime.threads > 0:
        torch.set_num_threads(cfg.runtime.threads)
    if cfg.runtime.deterministic:
        torch.use_deterministic_algorithms(True)
    dist = init_distributed(cfg.runtime.device, cfg.runtime.dist_timeout_min)
    if cfg.runtime.amp == "bf16" and dist.device.type == "cpu" and not cpu_has_fast_bf16():
        logger.warning("runtime.amp=bf16 on a CPU without native bfloat16 (AVX512-BF16/AMX) is slow; "
                       "consider runtime.amp=off")
    seed_everything(cfg.runtime.seed)  # the same on every rank: identical initial weights
    return dist


def _build_train_set(cfg: Config) -> DetectionDataset:
    train_set = build_dataset(cfg, "train")
    if len(train_set) == 0:
        source = getattr(cfg.data.train, "ann_file", "") or getattr(cfg.data.train, "root", "")
        dropped = len(train_set.bad_samples)
        raise ValueError(f"data.train has no usable images: {source} ({dropped} dropped as bad samples)")
    return train_set


def _place_model(cfg: Config, model: nn.Module, dist: DistContext) -> tuple[nn.Module, nn.Module]:
    """``(model, train_model)`` on the device: SyncBatchNorm and the DDP wrapper when distributed."""
    if cfg.runtime.sync_bn and dist.distributed:
        model = convert_sync_batchnorm(model, dist.device)
    memory_format = torch.channels_last if cfg.runtime.channels_last else torch.preserve_format
    model = model.to(dist.device).to(memory_format=memory_format)
    if not dist.distributed:
        return model, model
    device_ids = [dist.device.index] if dist.device.type == "cuda" else None
    return model, DistributedDataParallel(model, device_ids=device_ids)


def best_metric_key(cfg: Config) -> str:
    """The metrics key ranking ``best.pth``: ``eval.best_metric``, else AP / mAP (of the first named set)."""
    if cfg.eval.best_metric:
        return cfg.eval.best_metric
    names = val_set_names(cfg)
    plain = BEST_METRIC[cfg.eval.metric]
    return plain if names is None else f"{names[0]}/{plain}"


def _build_hooks(cfg: Config, trainer: Trainer, evaluate: Any, metrics_logger: MetricsLogger | None,
                 plan: TrainingPlan) -> list[HookBase]:
    """The default hooks, in calling order: loss statistics, logging, images, evaluation, checkpoints."""
    hooks: list[HookBase] = []
    heatmap_loss = getattr(trainer.criterion, "heatmap_loss", None)
    statistics = LossStatisticsHook(heatmap_loss, metrics_logger) if isinstance(heatmap_loss, EpochStatistics) else None
    if statistics is not None:
        hooks.append(statistics)
    extra = statistics.record_fields if statistics is not None else None
    hooks.append(TrainLoggingHook(cfg.runtime.log_interval, metrics_logger, extra=extra))
    hooks.append(VisualLoggingHook(cfg.runtime.vis_interval, metrics_logger, channel_order=cfg.data.channel_order,
                                   down_ratio=cfg.data.down_ratio))
    hooks.append(EvalHook(evaluate, plan.eval_interval, metrics_logger, sets=val_set_names(cfg)))
    best = best_metric_key(cfg)
    set_prefix = best.rpartition("/")[0] + "/" if "/" in best else ""
    hooks.append(CheckpointHook(best, cfg.runtime.checkpoint_interval, threshold_key=f"{set_prefix}best_f1_threshold",
                                minutes=cfg.runtime.checkpoint_minutes))
    configured = signal_numbers(cfg.runtime.stop_signals)  # checked in every case
    requeue = submitit_signal()  # in a submitit job: its preemption signal, handed on after the checkpoint
    stop_signals = [requeue] if requeue is not None else configured
    hooks.append(StopHook(stop_signals, hand_over=[requeue] if requeue is not None else []))  # after the checkpoints
    return hooks


def build_trainer(cfg: Config, work_dir: Path, *, resume: bool | str | Path | None = None,
                  progress: bool = True) -> Trainer:
    """See :meth:`Trainer.from_config`."""
    dist = _setup_runtime(cfg)
    train_set = _build_train_set(cfg)
    val_sets = build_val_datasets(cfg)
    for name, val_set in val_sets:  # what the first evaluation needs, checked before the first step
        check_scorable(val_set, cfg.eval.metric, name)
    pin = dist.device.type == "cuda"
    train_loader = build_loader(cfg, train_set, "train", rank=dist.rank, world_size=dist.world_size, pin_memory=pin)
    val_loaders = [build_loader(cfg, val_set, "val", rank=dist.rank, world_size=dist.world_size, pin_memory=pin)
                   for _, val_set in val_sets]
    plan = plan_training(cfg.solver, len(train_loader), cfg.eval.interval)
    num_classes = len(train_set.class_names)
    model, train_model = _place_model(cfg, build_model(cfg, num_classes), dist)
    reduce = all_reduce_sum if dist.distributed else None
    criterion: CenterNetCriterion = build_criterion(cfg, all_reduce_sum=reduce, world_size=dist.world_size)
    criterion.to(dist.device)
    normalizer = ImageNormalizer(cfg.data.mean, cfg.data.std, channels_last=cfg.runtime.channels_last).to(dist.device)
    base_lr = scaled_lr(cfg.solver, cfg.data.batch_size * dist.world_size)
    optimizer = build_optimizer(model.parameters(), cfg.solver, lr=base_lr,
                                backbone_params=model.get_submodule("backbone").parameters())
    ema = None
    if cfg.solver.ema:
        ema = ModelEMA(model, decay=cfg.solver.ema_decay, warmup_iters=cfg.solver.ema_warmup_iters)
    scheduler = build_scheduler(optimizer, plan.apply(cfg.solver), len(train_loader))
    trainer = Trainer(
        model, criterion, train_loader, optimizer, scheduler,
        targets=ConfiguredTargets(cfg.target, num_classes=num_classes, down_ratio=cfg.data.down_ratio),
        normalizer=normalizer, max_epochs=plan.epochs, train_model=train_model, dist=dist,
        amp=cfg.runtime.amp, scaler=torch.amp.GradScaler(dist.device.type, enabled=cfg.runtime.amp == "fp16"),
        ema=ema, grad_clip=cfg.solver.grad_clip, skip_nonfinite_steps=cfg.solver.skip_nonfinite_steps,
        store=CheckpointStore(work_dir / "checkpoints", keep=cfg.runtime.keep_checkpoints),
        metadata={"config": config_to_dict(cfg), "class_names": list(train_set.class_names),
                  "label_to_category_id": list(train_set.label_to_category_id)},
        progress=progress,
    )
    trainer.bad_annotation_images = len(train_set.bad_samples)
    if resume:
        trainer.resume(resume)
    metrics_logger = _prepare_work_dir(cfg, work_dir, dist) if dist.is_main else None

    slices = val_set_slices(cfg)  # bad slice settings fail here, before the first step

    def evaluate() -> dict[str, Any]:
        """Every val set in turn (each sharded under DDP); named sets give ``<set>/<metric>`` keys."""
        metrics: dict[str, Any] = {}
        for (name, val_set), val_loader in zip(val_sets, val_loaders, strict=True):
            settings = slices[name]
            sliced = None if settings is None else SlicedInput(
                settings, (cfg.data.input_size[0], cfg.data.input_size[1]), cfg.data.channel_order)
            out_dir = work_dir / "eval" if name is None else work_dir / "eval" / name
            result = evaluate_model(
                ema.module if ema is not None else model, val_set, val_loader, normalizer, device=dist.device,
                topk=cfg.eval.topk, flip=cfg.eval.flip, amp=cfg.runtime.amp, metric=cfg.eval.metric,
                backend=cfg.eval.backend, out_dir=out_dir if dist.is_main else None, progress=trainer.progress,
                score_threshold=cfg.eval.score_threshold, pr_iou=cfg.eval.pr_iou, max_dets=cfg.eval.max_dets,
                sliced=sliced,
            )
            metrics.update(result if name is None else {f"{name}/{key}": value for key, value in result.items()})
        return metrics

    trainer.register_hooks(_build_hooks(cfg, trainer, evaluate, metrics_logger, plan))
    val_sizes = ", ".join(f"{len(val_set)}" if name is None else f"{name} {len(val_set)}" for name, val_set in val_sets)
    logger.info(
        "training %s on %s x %d: %d train / %s val images, %d classes, global batch %d, "
        "lr %.3g (solver.lr %.3g, reference batch %s)",
        cfg.model.backbone.type, dist.device, dist.world_size, len(train_set), val_sizes, num_classes,
        trainer.global_batch_size, base_lr, cfg.solver.lr, cfg.solver.reference_batch_size or "not set",
    )
    logger.info("plan: %s", plan.describe())
    if plan.stretch != 1.0:  # a short smoke run must not train hundreds of epochs unnoticed
        logger.warning(
            "solver.min_iters=%d stretches solver.epochs=%d to %d epochs (%d steps); set solver.min_iters=0 to "
            "train exactly solver.epochs", cfg.solver.min_iters, cfg.solver.epochs, plan.epochs, plan.total_iters)
    return trainer


def _prepare_work_dir(cfg: Config, work_dir: Path, dist: DistContext) -> MetricsLogger:
    """Rank 0: the run folder with ``config.yaml`` and ``env.json``; returns its metrics logger."""
    work_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, work_dir / "config.yaml")
    (work_dir / "env.json").write_text(json.dumps(environment_info(dist.device), indent=2))
    return MetricsLogger(work_dir)
