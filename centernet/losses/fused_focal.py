"""The penalty-reduced focal loss as one autograd function that recomputes its terms in the backward pass.

With ``p = sigmoid(x)``, the loss of :func:`centernet.losses.focal.penalty_reduced_focal_loss_reference`
is written with one signed logit per element: ``z = x`` at a centre (``target == 1``) and ``z = -x``
elsewhere, so that ``log p`` (centre) and ``log(1 - p)`` (background) are both ``logsigmoid(z)`` and
``1 - p`` (centre) and ``p`` (background) are both ``q = sigmoid(-z)``::

    L = -sum(m * w * logsigmoid(z) * q^alpha) / N,   w = 1 at centres, (1 - target)^beta elsewhere

and, as ``d logsigmoid(z) / dz = q`` and ``dq / dz = -q (1 - q)``::

    dL/dx = -(m * w * s / N) * q^alpha * (q - alpha * (1 - q) * logsigmoid(z)),   s = dz/dx = +-1

Only the inputs (logits, target, mask) and the scalar ``N`` are kept for the backward pass, which
recomputes the terms. Two interchangeable backends compute the two passes:

- ``"eager"``: PyTorch operations on a few class planes at a time (on the CPU; other devices take the
  whole heatmap), through a handful of reused cache-sized buffers, so that every elementwise step
  reads data already in cache.
- ``"compiled"``: the same formulas as two ``torch.compile`` kernels, one loop over the heatmap each
  (forward: the sum and the positive count; backward: the gradient). Compiling takes seconds per
  new input shape; a backend that fails to compile falls back to ``"eager"`` with a warning.

``"auto"`` picks ``"compiled"`` on CUDA devices and ``"eager"`` elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from centernet.losses.base import POSITIVE_TARGET
from centernet.losses.masking import safe_denominator

logger = logging.getLogger(__name__)
BACKENDS = ("auto", "eager", "compiled")
# On the CPU, the eager backend works on this many heatmap cells at a time (its six float32 buffers,
# 1.5 MiB, then stay in a core's L2 cache).
CPU_CHUNK_ELEMENTS = 1 << 16
_NUM_BUFFERS = 6  # sign, z, logsigmoid(z), q, weight, scratch
_SQUARINGS = {2.0: 1, 4.0: 2, 8.0: 3, 16.0: 4}  # exponents computed by repeated in-place squaring

Chunk = tuple[Tensor, Tensor, Tensor | None, Tensor | None]


def _power_(tensor: Tensor, exponent: float) -> Tensor:
    """``tensor ** exponent`` in place (``x ** 0 = 1``; powers of two by squaring, much faster than ``pow``)."""
    if exponent == 0.0:
        return tensor.fill_(1.0)
    if exponent in _SQUARINGS:
        for _ in range(_SQUARINGS[exponent]):
            tensor.square_()
        return tensor
    return tensor if exponent == 1.0 else tensor.pow_(exponent)


def _chunks(x: Tensor, y: Tensor, mask: Tensor | None, grad: Tensor | None) -> Iterator[Chunk]:
    """``(logits, target, mask, grad)`` pieces covering the heatmap: a few class planes of one image on the CPU.

    Args:
        x: FloatTensor[B, C, H, W] contiguous.
        y: FloatTensor[B, C, H, W] contiguous.
        mask: None, or FloatTensor[B, 1, H, W] / [B, C, H, W] (a one-channel piece broadcasts over the planes).
        grad: None, or FloatTensor[B, C, H, W] written piece by piece.
    """
    if x.device.type != "cpu":
        yield x, y, mask, grad
        return
    batch, classes, height, width = x.shape
    step = max(1, CPU_CHUNK_ELEMENTS // (height * width))
    for b in range(batch):
        for c0 in range(0, classes, step):
            c1 = min(classes, c0 + step)
            piece_mask = None if mask is None else (mask[b, :1] if mask.shape[1] == 1 else mask[b, c0:c1])
            yield x[b, c0:c1], y[b, c0:c1], piece_mask, None if grad is None else grad[b, c0:c1]


def _buffers(x: Tensor) -> list[Tensor]:
    """Scratch tensors holding the largest chunk of :func:`_chunks` (cut to each chunk with ``[:n]``)."""
    if x.device.type == "cpu":
        _, classes, height, width = x.shape
        shape: tuple[int, ...] = (min(classes, max(1, CPU_CHUNK_ELEMENTS // (height * width))), height, width)
    else:
        shape = tuple(x.shape)
    return [torch.empty(shape, dtype=torch.float32, device=x.device) for _ in range(_NUM_BUFFERS)]


def _terms(
    x: Tensor, y: Tensor, mask: Tensor | None, alpha: float, beta: float, buffers: list[Tensor]
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The per-element terms of one chunk, written into the buffers.

    Returns:
        ``sign`` (+1 at counted centres, -1 elsewhere), ``z = sign * x``, ``logsigmoid(z)``,
        ``q = sigmoid(-z)``, the weight ``w * m`` and the number of counted centres (FloatTensor[]).
    """
    sign, z, log_sig, q, weight, scratch = (t[: x.shape[0]] for t in buffers)
    torch.eq(y, POSITIVE_TARGET, out=sign)  # 1.0 at centres, 0.0 elsewhere
    if beta > 0:
        if beta in _SQUARINGS:  # an even power: (y - 1)^beta = (1 - y)^beta, one operation fewer
            torch.sub(y, 1.0, out=weight)
        else:
            torch.neg(y, out=weight).add_(1.0)
        _power_(weight, beta).add_(sign)  # (1 - y)^beta is 0 at a centre, whose weight is 1
    else:
        weight.fill_(1.0)
    if mask is not None:
        weight.mul_(mask)
        sign.mul_(mask)  # an ignored centre's sign does not matter: its weight is 0
    count = sign.sum()
    sign.mul_(2.0).sub_(1.0)
    torch.mul(sign, x, out=z)
    # logsigmoid(z) = min(z, 0) - log1p(exp(-|z|)): exact to rounding, and faster on CPUs than F.logsigmoid
    torch.abs(z, out=scratch).neg_().exp_().log1p_()
    torch.clamp(z, max=0.0, out=log_sig).sub_(scratch)
    torch.neg(z, out=q).sigmoid_()
    return sign, z, log_sig, q, weight, count


def _eager_forward(x: Tensor, y: Tensor, mask: Tensor | None, alpha: float, beta: float) -> tuple[Tensor, Tensor]:
    """``(sum(m * w * logsigmoid(z) * q^alpha), number of counted centres)``, FloatTensor[] each."""
    sums: list[Tensor] = [x.new_zeros(())]  # one per chunk, added up once at the end
    counts: list[Tensor] = [x.new_zeros(())]
    if x.numel() > 0:
        buffers = _buffers(x)
        for xs, ys, ms, _ in _chunks(x, y, mask, None):
            _, _, log_sig, q, weight, count = _terms(xs, ys, ms, alpha, beta, buffers)
            sums.append(log_sig.mul_(_power_(q, alpha)).mul_(weight).sum())
            counts.append(count)
    return torch.stack(sums).sum(), torch.stack(counts).sum()


def _eager_backward(
    x: Tensor, y: Tensor, mask: Tensor | None, scale: Tensor, alpha: float, beta: float
) -> Tensor:
    """``scale * d sum(m * w * logsigmoid(z) * q^alpha) / dx``, FloatTensor[B, C, H, W]."""
    grad = torch.empty_like(x)
    if x.numel() > 0:
        buffers = _buffers(x)
        for xs, ys, ms, gs in _chunks(x, y, mask, grad):
            sign, z, log_sig, q, weight, _ = _terms(xs, ys, ms, alpha, beta, buffers)
            one_minus_q = z.sigmoid_()  # sigmoid(z)
            inner = torch.addcmul(q, one_minus_q, log_sig, value=-alpha, out=log_sig)
            assert gs is not None
            torch.mul(_power_(q, alpha), inner, out=gs)
            gs.mul_(weight).mul_(sign.mul_(scale))
    return grad


def _kernel_terms(x: Tensor, y: Tensor, mask: Tensor | None, beta: float) -> tuple[Tensor, Tensor, Tensor]:
    """``(counted centres 0/1, sign, weight)`` as expressions (for the compiled kernels)."""
    centre = (y == POSITIVE_TARGET).float()
    weight = (1.0 - y) ** beta + centre if beta > 0 else torch.ones_like(y)
    if mask is not None:
        centre, weight = centre * mask, weight * mask
    return centre, 2.0 * centre - 1.0, weight


def _kernel_forward(x: Tensor, y: Tensor, mask: Tensor | None, alpha: float, beta: float) -> tuple[Tensor, Tensor]:
    """:func:`_eager_forward` in one expression; the sum accumulates in float64 (a long float32 loop drifts)."""
    centre, sign, weight = _kernel_terms(x, y, mask, beta)
    z = sign * x
    terms = F.logsigmoid(z) * torch.sigmoid(-z) ** alpha * weight
    return terms.sum(dtype=torch.float64).float(), centre.sum()


def _kernel_backward(
    x: Tensor, y: Tensor, mask: Tensor | None, scale: Tensor, alpha: float, beta: float
) -> Tensor:
    """:func:`_eager_backward` in one expression."""
    _, sign, weight = _kernel_terms(x, y, mask, beta)
    z = sign * x
    q = torch.sigmoid(-z)
    return q**alpha * (q - alpha * torch.sigmoid(z) * F.logsigmoid(z)) * (weight * sign * scale)


Kernels = tuple[Callable[..., tuple[Tensor, Tensor]], Callable[..., Tensor]]
_EAGER: Kernels = (_eager_forward, _eager_backward)
_compiled_kernels: Kernels | None = None
_compile_failed = False


def _kernels(backend: str, device: torch.device) -> Kernels:
    """The ``(forward, backward)`` pair of ``backend`` (``auto``: compiled on CUDA, eager elsewhere)."""
    global _compiled_kernels
    if backend == "eager" or _compile_failed or (backend == "auto" and device.type != "cuda"):
        return _EAGER
    if _compiled_kernels is None:
        _compiled_kernels = (torch.compile(_kernel_forward), torch.compile(_kernel_backward))
    return _compiled_kernels


def _run(backend: str, which: int, *args: Any) -> Any:
    """Call kernel ``which`` (0 forward, 1 backward) of ``backend``, falling back to eager if compiling fails."""
    global _compile_failed
    device = args[0].device
    kernel = _kernels(backend, device)[which]
    if kernel is _EAGER[which]:
        return kernel(*args)
    try:
        with torch.autocast(device.type, enabled=False):
            return kernel(*args)
    except Exception as error:  # any compiler failure: the eager kernels compute the same
        _compile_failed = True
        logger.warning("torch.compile of the focal loss failed (%s); using the eager backend", str(error)[:200])
        return _EAGER[which](*args)


class PenaltyReducedFocalFunction(torch.autograd.Function):
    """Forward and backward of the penalty-reduced focal loss (see the module docstring).

    ``apply(logits, target, mask, normaliser, alpha, beta, backend)`` with ``logits`` / ``target``
    float32 contiguous ``[B, C, H, W]``, ``mask`` None or float32 ``[B, 1 | C, H, W]`` and
    ``normaliser`` None or a float32 scalar tensor; returns FloatTensor[].
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        y: Tensor,
        mask: Tensor | None,
        normaliser: Tensor | None,
        alpha: float,
        beta: float,
        backend: str,
    ) -> Tensor:
        total, count = _run(backend, 0, x, y, mask, alpha, beta)
        divisor = count if normaliser is None else normaliser.detach().to(device=x.device, dtype=torch.float32)
        divisor = safe_denominator(divisor)
        ctx.save_for_backward(x, y, mask, divisor)
        ctx.alpha, ctx.beta, ctx.backend = alpha, beta, backend
        return -total / divisor

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        x, y, mask, divisor = ctx.saved_tensors
        scale = -grad_output.float() / divisor
        grad = _run(ctx.backend, 1, x, y, mask, scale, ctx.alpha, ctx.beta)
        return grad, None, None, None, None, None, None


def fused_penalty_reduced_focal_loss(
    logits: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    normaliser: Tensor | None = None,
    *,
    alpha: float = 2.0,
    beta: float = 4.0,
    backend: str = "auto",
) -> Tensor:
    """:func:`~centernet.losses.focal.penalty_reduced_focal_loss` through :class:`PenaltyReducedFocalFunction`.

    The inputs' shapes are checked by the caller; ``target`` is taken to lie in ``[0, 1]``.

    Raises:
        ValueError: for a ``backend`` not in :data:`BACKENDS`.
    """
    if backend not in BACKENDS:
        raise ValueError(f"penalty_reduced_focal_loss: backend must be one of {list(BACKENDS)}, got {backend!r}")
    x = logits.float().contiguous()
    y = target.float().contiguous()
    m = None if mask is None else mask.to(device=x.device, dtype=torch.float32)
    result: Tensor = PenaltyReducedFocalFunction.apply(x, y, m, normaliser, float(alpha), float(beta), backend)
    return result
