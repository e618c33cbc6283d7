"""Builders that turn the ``data`` and ``augment`` config sections into datasets and loaders."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sized
from typing import Literal, cast

import cv2
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from centernet.config.schema import CocoDatasetConfig, Config, DatasetConfig, VocDatasetConfig
from centernet.data.base import DetectionDataset
from centernet.data.coco import CocoDetection
from centernet.data.collate import make_collate
from centernet.data.transforms import TrainTransform, ValTransform
from centernet.data.voc import VOCDetection

Split = Literal["train", "val"]
MIN_BATCHES_PER_WORKER = 4  # evaluation batches that justify starting one spawned loader worker


def build_transform(cfg: Config, split: Split) -> TrainTransform | ValTransform:
    """The train augmentation or the deterministic validation transform of ``cfg``."""
    input_size = (cfg.data.input_size[0], cfg.data.input_size[1])
    if split == "val":
        return ValTransform(input_size=input_size, channel_order=cfg.data.channel_order)
    aug = cfg.augment
    albumentations = None
    if aug.albumentations:  # imported only then: albumentations is slow to import
        from centernet.data.transforms.albumentations_chain import albumentations_from_config

        albumentations = albumentations_from_config(aug)
    return TrainTransform(
        input_size=input_size,
        scale_choices=tuple(aug.scale_choices),
        random_crop=aug.random_crop,
        scale_jitter=aug.scale_jitter,
        shift_jitter=aug.shift_jitter,
        flip_prob=aug.flip_prob,
        color_jitter=aug.color_jitter,
        pca_lighting_std=aug.pca_lighting_std,
        channel_order=cfg.data.channel_order,
        albumentations=albumentations,
    )


def val_set_sections(cfg: Config) -> list[tuple[str | None, DatasetConfig]]:
    """``(name, section)`` of each validation set: ``[(None, data.val)]`` for a single unnamed set."""
    if isinstance(cfg.data.val, list):
        return [(section.name, section) for section in cfg.data.val]
    return [(None, cfg.data.val)]


def build_val_datasets(cfg: Config, only: str | None = None) -> list[tuple[str | None, DetectionDataset]]:
    """``(name, dataset)`` of each validation set (see :func:`val_set_sections`), or of the set named ``only``.

    Raises:
        ValueError: ``only`` is not the name of a set (or is given for a single unnamed set).
    """
    sections = val_set_sections(cfg)
    if only is not None:
        names = [name for name, _ in sections if name is not None]
        if only not in names:
            known = f"one of {', '.join(names)}" if names else "unused: data.val is a single unnamed set"
            raise ValueError(f"--val-set {only!r} is not a set of data.val ({known})")
        sections = [(name, section) for name, section in sections if name == only]
    return [(name, build_dataset(cfg, "val", section=section, name=name)) for name, section in sections]


def build_dataset(cfg: Config, split: Split, *, section: DatasetConfig | None = None,
                  name: str | None = None) -> DetectionDataset:
    """The ``data.<split>`` dataset (COCO or VOC format) with the transform of that split.

    With several named val sets, ``build_dataset(cfg, "val")`` is the first one; ``section`` (and its
    ``name``, for messages) builds another (see :func:`build_val_datasets`).
    """
    if section is None:
        name, section = val_set_sections(cfg)[0] if split == "val" else (None, cfg.data.train)
    where = f"data.{split}" if name is None else f"data.{split}[{name}]"
    transform = build_transform(cfg, split)
    if isinstance(section, VocDatasetConfig):
        if not section.root or not section.split:
            raise ValueError(f"{where}: root and split must both be set for type 'voc'")
        years = None if section.years is None else [str(year) for year in section.years]
        voc = VOCDetection(
            section.root,
            section.split,
            years=years,
            transform=transform,
            classes=cfg.data.classes,
            seed=cfg.runtime.seed,
        )
        voc.on_bad_sample = cfg.data.on_bad_sample  # unreadable images (annotations are checked by VOCDetection)
        return voc
    assert isinstance(section, CocoDatasetConfig)
    if not section.ann_file or not section.img_dir:
        raise ValueError(f"{where}: ann_file and img_dir must both be set for type 'coco'")
    return CocoDetection(
        section.ann_file,
        section.img_dir,
        transform=transform,
        classes=cfg.data.classes,
        seed=cfg.runtime.seed,
        on_bad_sample=cfg.data.on_bad_sample,
    )


class EpochIndexSampler(Sampler[tuple[int, int]]):
    """Yields ``(epoch, index)`` pairs of a shuffling sampler, so that datasets seed their augmentation
    by epoch even in persistent loader workers (which never see a ``set_epoch`` on the dataset).

    Under DDP the base is a ``DistributedSampler`` with this process's rank: every rank draws the same
    per-epoch permutation (seeded by ``seed + epoch``) and takes every ``world_size``-th index of it,
    so rank ``r``'s ``k``-th sample is the permutation's ``k * world_size + r``-th index.

    Args:
        base: the index sampler (shuffled per epoch through its own ``set_epoch``).
    """

    def __init__(self, base: DistributedSampler) -> None:
        self.base = base
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch (shuffle order and the epoch passed to the dataset) and where in it to begin.

        Args:
            epoch: 0-based epoch.
            start: number of this rank's samples of the epoch to skip (mid-epoch resume).
        """
        if not 0 <= start <= len(self.base):
            raise ValueError(f"sampler start {start} outside [0, {len(self.base)}]")
        self.epoch = epoch
        self.start = start
        self.base.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = itertools.islice(iter(self.base), self.start, None)
        return ((self.epoch, int(index)) for index in indices)

    def __len__(self) -> int:
        return len(self.base) - self.start


class ShardSampler(Sampler[int]):
    """Rank ``r`` of ``world_size`` takes indices ``r, r + world_size, ...`` (no padding, no repeats).

    Used for sharded evaluation: the shards together cover every image exactly once.
    """

    def __init__(self, length: int, *, rank: int = 0, world_size: int = 1) -> None:
        self.indices = range(rank, length, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def init_loader_worker(worker_id: int) -> None:
    """Loader worker set-up: one OpenCV thread per worker (the workers already run in parallel)."""
    cv2.setNumThreads(1)


def eval_workers(workers: int, batches: int) -> int:
    """Loader workers worth starting for ``batches`` evaluation batches.

    A spawned worker takes seconds to start (it imports torch), which only pays off when it has several
    batches to load: at most one worker per :data:`MIN_BATCHES_PER_WORKER` batches, so a tiny val set
    (the two images of the trees demo) loads in the main process.
    """
    return max(0, min(workers, batches // MIN_BATCHES_PER_WORKER))


def build_loader(
    cfg: Config,
    dataset: Dataset,
    split: Split,
    *,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
) -> DataLoader:
    """A loader over ``dataset``: shuffled per epoch (call ``loader.sampler.set_epoch``) for train.

    Args:
        cfg: the config (``data.batch_size`` is per process; ``data.workers``; ``eval.batch_size``).
        dataset: the dataset.
        split: ``train`` (shuffled, sharded per rank, last incomplete batch dropped) or ``val``
            (in order; sharded as ``rank, rank + world_size, ...``).
        rank: this process's rank.
        world_size: number of processes.
        pin_memory: pin host memory (CUDA).
    """
    workers = cfg.data.workers
    if split == "train":
        sampler: Sampler = EpochIndexSampler(
            DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=cfg.runtime.seed)
        )
        batch_size = cfg.data.batch_size
    else:
        sampler = ShardSampler(len(cast(Sized, dataset)), rank=rank, world_size=world_size)
        batch_size = cfg.eval.batch_size or cfg.data.batch_size
        workers = eval_workers(workers, math.ceil(len(sampler) / batch_size))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=make_collate(cfg.data.max_objects),
        pin_memory=pin_memory,
        worker_init_fn=init_loader_worker,
        drop_last=split == "train" and len(cast(Sized, dataset)) >= batch_size * world_size,
        persistent_workers=workers > 0,
        # Fresh worker processes: forking a parent whose OpenCV/OpenMP thread pools already ran can
        # deadlock the children; started once per run thanks to persistent workers.
        multiprocessing_context="spawn" if workers > 0 else None,
    )
