"""Run-environment helpers: seeding, device selection and a record of versions for ``env.json``."""

from __future__ import annotations

import platform
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def select_device(name: str) -> torch.device:
    """Resolve ``auto | cpu | cuda`` (or ``cuda:N``) to a device.

    Raises:
        RuntimeError: ``cuda`` was asked for on a machine without a usable CUDA device.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"runtime.device={name!r} but no CUDA device is available (use cpu or auto)")
    return torch.device(name)


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); without it bf16 is emulated (slow)."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(callable(check) and check() for check in checks)


def capture_rng_state() -> dict[str, Any]:
    """Snapshot every global random generator (for exact resume)."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": _numpy_state_as_builtins(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore generators saved by :func:`capture_rng_state`."""
    random.setstate(_as_python_state(state["python"]))
    np.random.set_state(_as_numpy_state(state["numpy"]))
    torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.as_tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def _as_python_state(state: Any) -> tuple[Any, ...]:
    """Python's generator state as a tuple again (checkpoints may store tuples as lists)."""
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def _numpy_state_as_builtins() -> tuple[Any, ...]:
    """NumPy's legacy generator state with its key array as a list (loadable with weights_only)."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return (str(name), np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached))


def _as_numpy_state(state: Any) -> tuple[Any, ...]:
    name, keys, pos, has_gauss, cached = state
    return (name, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached))


def git_commit(directory: Path | None = None) -> str | None:
    """Return the current git commit of ``directory`` (default: this package's tree) or None."""
    cwd = directory or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment_info(device: torch.device) -> dict[str, Any]:
    """Versions, device and git commit of this run (written to ``env.json``)."""
    import torchvision

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "device": str(device),
        "cpu_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
    }
    if device.type == "cuda":
        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
