"""Mixed precision: ``runtime.amp`` (off | fp16 | bf16) as an autocast context."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch

AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}



def autocast_context(device: torch.device, amp: str) -> Any:
    """``torch.autocast`` for ``runtime.amp`` (fp16 / bf16), or a no-op context for ``off``.

    Raises:
        ValueError: fp16 asked for on a CPU (use bf16 there).
    """
    if amp == "off":
        return nullcontext()
    if amp == "fp16" and device.type == "cpu":
        raise ValueError("runtime.amp=fp16 needs a CUDA device; use runtime.amp=bf16 on CPU")
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])
