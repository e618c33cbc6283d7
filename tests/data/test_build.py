"""Loaders built from the config: per-epoch augmentation that does not depend on the worker setup."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from centernet.config import load_config
from centernet.data.build import EpochIndexSampler, build_dataset, build_loader


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
