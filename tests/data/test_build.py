"""Loaders built from the config: per-epoch augmentation that does not depend on the worker setup."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from centernet.config import load_config
from centernet.data.build import EpochIndexSampler, ShardSampler, build_dataset, build_loader, eval_workers


def epoch_batches(config: Path, workers: int, epochs: int) -> list[list[torch.Tensor]]:
    cfg = load_config(config, [f"data.workers={workers}"])
    dataset = build_dataset(cfg, "train")
    loader = build_loader(cfg, dataset, "train")
    assert isinstance(loader.sampler, EpochIndexSampler)
    runs = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        runs.append([batch["images"] for batch in loader])
    return runs


def test_persistent_workers_follow_the_epoch_like_the_main_process(tiny_config: Callable[..., Path]) -> None:
    config = tiny_config()
    in_process = epoch_batches(config, workers=0, epochs=2)
    in_workers = epoch_batches(config, workers=2, epochs=2)
    for epoch in range(2):
        assert len(in_process[epoch]) == len(in_workers[epoch]) == 3
        for a, b in zip(in_process[epoch], in_workers[epoch], strict=True):
            assert torch.equal(a, b)
    assert not torch.equal(in_process[0][0], in_process[1][0])  # a new epoch draws new augmentation


def test_epoch_index_sampler_pairs_indices_with_the_epoch() -> None:
    sampler = EpochIndexSampler(torch.utils.data.DistributedSampler(range(5), num_replicas=1, rank=0, seed=1))
    sampler.set_epoch(3)
    pairs = list(sampler)
    assert len(sampler) == 5 and sorted(i for _, i in pairs) == [0, 1, 2, 3, 4]
    assert {e for e, _ in pairs} == {3}


def test_ranks_interleave_the_single_process_permutation() -> None:
    """Rank r's k-th index is the (k * world + r)-th of the permutation one process would draw, so
    consecutive per-rank batches of b together form the single-process batch of b * world."""
    single = EpochIndexSampler(torch.utils.data.DistributedSampler(range(12), num_replicas=1, rank=0, seed=5))
    ranks = [
        EpochIndexSampler(torch.utils.data.DistributedSampler(range(12), num_replicas=2, rank=r, seed=5))
        for r in range(2)
    ]
    for epoch in (0, 1):
        single.set_epoch(epoch)
        for sampler in ranks:
            sampler.set_epoch(epoch)
        order = [i for _, i in single]
        per_rank = [[i for _, i in sampler] for sampler in ranks]
        assert per_rank[0] == order[0::2] and per_rank[1] == order[1::2]
    single.set_epoch(0)
    first = [i for _, i in single]
    single.set_epoch(1)
    assert [i for _, i in single] != first  # reshuffled per epoch


def test_sampler_start_skips_the_consumed_part_of_the_epoch() -> None:
    sampler = EpochIndexSampler(torch.utils.data.DistributedSampler(range(10), num_replicas=1, rank=0, seed=2))
    sampler.set_epoch(4)
    full = list(sampler)
    sampler.set_epoch(4, start=6)
    assert list(sampler) == full[6:] and len(sampler) == 4
    sampler.set_epoch(5)
    assert len(sampler) == 10  # the next epoch starts from its beginning
    with pytest.raises(ValueError, match=r"sampler start 11 outside \[0, 10\]"):
        sampler.set_epoch(4, start=11)


@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
def test_shards_cover_every_image_once(world_size: int) -> None:
    shards = [list(ShardSampler(7, rank=r, world_size=world_size)) for r in range(world_size)]
    assert sorted(i for shard in shards for i in shard) == list(range(7))
    assert shards[0][:2] == [0, world_size]  # rank 0 takes 0, world_size, 2 * world_size, ...
    assert list(ShardSampler(0, rank=0, world_size=world_size)) == []


def test_a_tiny_val_set_loads_without_spawning_workers(tiny_config: Callable[..., Path]) -> None:
    cfg = load_config(tiny_config(), ["data.workers=2", "data.batch_size=2"])
    val_set = build_dataset(cfg, "val")  # 4 images: 2 batches, not worth a worker's start-up
    loader = build_loader(cfg, val_set, "val")
    assert loader.num_workers == 0 and len(list(loader)) == 2
    assert build_loader(cfg, build_dataset(cfg, "train"), "train").num_workers == 2  # training keeps its workers
    assert [eval_workers(2, batches) for batches in (0, 1, 3, 4, 7, 8, 100)] == [0, 0, 0, 1, 1, 2, 2]
