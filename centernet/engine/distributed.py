"""Multi-process (DDP) helpers: process-group set-up from ``torchrun`` and the collectives the loop needs.

``torchrun --nproc_per_node N tools/train.py ...`` starts N processes with ``RANK``, ``LOCAL_RANK``
and ``WORLD_SIZE`` in their environment. :func:`init_distributed` joins them into one process group
(NCCL on CUDA, Gloo on CPU); every helper below is a no-op for a single process, so the same code
runs with and without ``torchrun``.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from centernet.utils.env import select_device

logger = logging.getLogger(__name__)

BACKENDS = {"cuda": "nccl", "cpu": "gloo"}  # device type -> process-group backend


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job.

    Attributes:
        rank: global rank in ``[0, world_size)``.
        world_size: number of processes.
        local_rank: rank on this node (selects the CUDA device).
        device: the device this process trains on.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes logs, evaluation files and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as error:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from error


DEFAULT_TIMEOUT_MIN = 30.0  # torch's own default for both backends
ELASTIC_RESTART_VARIABLE = "TORCHELASTIC_RESTART_COUNT"  # set by torchrun in every worker: 0, 1, ... per attempt


def init_distributed(device_name: str, timeout_min: float = DEFAULT_TIMEOUT_MIN) -> DistContext:
    """Join the ``torchrun`` process group (if any) and pick this process's device.

    Args:
        device_name: ``runtime.device`` (``auto | cpu | cuda``); under DDP with CUDA each process
            uses ``cuda:LOCAL_RANK``.
        timeout_min: how long joining the group and each collective may wait for the other ranks
            (``runtime.dist_timeout_min``); a rank that gives up exits, and ``torchrun --max-restarts``
            restarts the group.

    Returns:
        The :class:`DistContext`; a single-process context when ``WORLD_SIZE`` is unset or 1.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    device = select_device(device_name)
    if world_size <= 1:
        return DistContext(device=device)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        _join_group(BACKENDS[device.type], datetime.timedelta(minutes=timeout_min))
    logger.info("DDP rank %d/%d (local %d) on %s, backend %s", rank, world_size, local_rank, device,
                dist.get_backend())
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def _join_group(backend: str, timeout: datetime.timedelta) -> None:
    """``init_process_group`` from torchrun's environment; in a group torchrun restarted, under a key prefix of
    its own attempt: the store outlives a failed attempt, and a restarted rank reading the addresses that a
    dead rank published there hangs or is refused (seen with Gloo; docs/failures.md)."""
    attempt = os.environ.get(ELASTIC_RESTART_VARIABLE)
    if attempt is None:
        dist.init_process_group(backend=backend, timeout=timeout)
        return
    store, rank, world_size = next(dist.rendezvous("env://", timeout=timeout))
    dist.init_process_group(backend=backend, store=dist.PrefixStore(f"centernet/attempt_{attempt}", store),
                            rank=rank, world_size=world_size, timeout=timeout)


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of ``tensor`` over all ranks (a new tensor; ``tensor`` itself is left unchanged).

    Args:
        tensor: any tensor on this process's device (not differentiated through).
    """
    if not is_distributed():
        return tensor
    reduced = tensor.detach().clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` for a single process."""
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_distributed():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is True on at least one rank (one small all-reduce)."""
    if not is_distributed():
        return flag
    return bool(all_reduce_sum(torch.tensor([int(flag)], device=device)).item() > 0)


def barrier() -> None:
    """Wait for every rank (no-op for a single process)."""
    if is_distributed():
        dist.barrier()


def destroy_distributed() -> None:
    """Leave the process group (call once at the end of a DDP run)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
