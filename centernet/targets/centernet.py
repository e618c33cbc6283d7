"""CenterNet training targets: Gaussian radius formulas and batched, on-device target rendering.

Every object becomes a peak on the heatmap of its class plus a size ``(w, h)``, a sub-pixel offset and
the flat index of its peak cell. The semantics reproduce the original CenterNet (``ctdet`` dataset)
exactly; the rendering itself is vectorised over the whole batch (no Python loop over images or
objects): every pixel of every object's Gaussian window is enumerated once and merged into the
heatmap with ``scatter_reduce(amax)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)

# The original draws the Gaussian in float64 and stores it in a float32 heatmap.
_GAUSSIAN_DTYPE = torch.float64
# Values of the Gaussian below ``eps * max`` are zeroed (``max`` is 1, at the window centre).
_GAUSSIAN_EPS = torch.finfo(torch.float64).eps
# The Gaussian window ``[-r, r]^2`` has sigma = diameter / _SIGMA_DIVISOR (3 sigma on each side).
_SIGMA_DIVISOR = 6.0

RadiusFormula = Callable[[Tensor, Tensor, float], Tensor]


def _radius_centernet(height: Tensor, width: Tensor, min_overlap: float) -> Tensor:
    """The original CenterNet radius (the pre-fix CornerNet formula), reproduced exactly.

    Each of the three quadratics ``a r^2 + b r + c = 0`` (one corner moved, both corners inside,
    both corners outside) is "solved" as ``(b + sqrt(b^2 - 4ac)) / 2``; the third case is always the
    smallest, giving about 3.35x the radius that actually guarantees ``min_overlap``.
    """
    o = min_overlap
    b1 = height + width
    c1 = width * height * (1 - o) / (1 + o)
    r1 = (b1 + (b1**2 - 4 * c1).sqrt()) / 2
    a2 = 4
    b2 = 2 * (height + width)
    c2 = (1 - o) * width * height
    r2 = (b2 + (b2**2 - 4 * a2 * c2).sqrt()) / 2
    a3 = 4 * o
    b3 = -2 * o * (height + width)
    c3 = (o - 1) * width * height
    r3 = (b3 + (b3**2 - 4 * a3 * c3).sqrt()) / 2
    return torch.minimum(torch.minimum(r1, r2), r3)


def _radius_cornernet(height: Tensor, width: Tensor, min_overlap: float) -> Tensor:
    """The corrected CornerNet radius: the largest corner shift that keeps IoU >= ``min_overlap``.

    Case 1 (one corner shifted by ``r`` in x and y): ``(w-r)(h-r) / (2wh - (w-r)(h-r)) = o``;
    case 2 (both corners shifted inwards): ``(w-2r)(h-2r) / (wh) = o``;
    case 3 (both corners shifted outwards): ``wh / ((w+2r)(h+2r)) = o``.
    Each is a quadratic whose relevant root is divided by ``2a``; the result is their minimum.
    """
    o = min_overlap
    a1 = 1
    b1 = height + width
    c1 = width * height * (1 - o) / (1 + o)
    r1 = (b1 - (b1**2 - 4 * a1 * c1).sqrt()) / (2 * a1)
    a2 = 4
    b2 = 2 * (height + width)
    c2 = (1 - o) * width * height
    r2 = (b2 - (b2**2 - 4 * a2 * c2).sqrt()) / (2 * a2)
    a3 = 4 * o
    b3 = -2 * o * (height + width)
    c3 = (o - 1) * width * height
    r3 = (b3 + (b3**2 - 4 * a3 * c3).sqrt()) / (2 * a3)
    return torch.minimum(torch.minimum(r1, r2), r3)


RADIUS_FORMULAS: dict[str, RadiusFormula] = {
    "centernet": _radius_centernet,
    "cornernet": _radius_cornernet,
}


def _get_formula(formula: str) -> RadiusFormula:
    """Look up a radius formula by name, failing with the list of valid names."""
    try:
        return RADIUS_FORMULAS[formula]
    except KeyError:
        raise ValueError(
            f"target.radius: unknown radius formula {formula!r}; valid names: {sorted(RADIUS_FORMULAS)}"
        ) from None


def _check_overlap(min_overlap: float) -> None:
    if not 0.0 < min_overlap < 1.0:
        raise ValueError(f"target.min_overlap must lie in (0, 1), got {min_overlap}")


def gaussian_radius_tensor(
    height: Tensor, width: Tensor, min_overlap: float = 0.7, formula: str = "centernet"
) -> Tensor:
    """Vectorised Gaussian radius (before the ``int`` truncation) for many boxes.

    Args:
        height: FloatTensor[...] box heights in output pixels (CenterNet passes ``ceil(h)``).
        width: FloatTensor[...] box widths, same shape as ``height``.
        min_overlap: IoU that a box with corners moved by the radius must still reach, in (0, 1).
        formula: name in :data:`RADIUS_FORMULAS` (``centernet`` = the original, ``cornernet`` = fixed).

    Returns:
        FloatTensor[...] radii, dtype and device of the broadcast inputs.
    """
    _check_overlap(min_overlap)
    return _get_formula(formula)(height, width, min_overlap)


def gaussian_radius(
    height: float, width: float, min_overlap: float = 0.7, formula: str = "centernet"
) -> float:
    """Gaussian radius of one box (float64), the scalar form of :func:`gaussian_radius_tensor`.

    Args:
        height: box height in output pixels (CenterNet passes ``ceil(h)``).
        width: box width in output pixels (CenterNet passes ``ceil(w)``).
        min_overlap: IoU that a box with corners moved by the radius must still reach, in (0, 1).
        formula: name in :data:`RADIUS_FORMULAS`.

    Returns:
        The radius as a float (not yet truncated to an integer).
    """
    h = torch.tensor(float(height), dtype=torch.float64)
    w = torch.tensor(float(width), dtype=torch.float64)
    return float(gaussian_radius_tensor(h, w, min_overlap, formula))


def _check_inputs(
    boxes: Tensor,
    labels: Tensor,
    valid: Tensor,
    ignore: Tensor | None,
    output_size: Sequence[int],
    caller: str = "render_targets",
) -> None:
    """Validate shapes and dtypes of the renderers' inputs (one-line errors starting with ``caller``)."""
    if boxes.dim() != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"{caller}: boxes must be [B, M, 4] xyxy, got shape {tuple(boxes.shape)}")
    expected = tuple(boxes.shape[:2])
    for name, tensor in (("labels", labels), ("valid", valid), ("ignore", ignore)):
        if tensor is not None and tuple(tensor.shape) != expected:
            raise ValueError(f"{caller}: {name} must be [B, M] = {expected}, got {tuple(tensor.shape)}")
    for name, tensor in (("valid", valid), ("ignore", ignore)):
        if tensor is not None and tensor.dtype != torch.bool:
            raise ValueError(f"{caller}: {name} must be a bool tensor, got {tensor.dtype}")
    if len(output_size) != 2 or min(output_size) <= 0:
        raise ValueError(f"{caller}: output_size must be (height, width) > 0, got {output_size}")


def _zeros_float32(numel: int, device: torch.device) -> Tensor:
    """A zero-filled float32 vector; on CPU allocated by numpy (``calloc``, transparent huge pages).

    The heatmap is large (``B * C * H * W``: 168 MB for 32 x 80 x 128 x 128) and almost all of it
    stays 0. ``torch.zeros`` writes every byte through 4 KiB page faults up front; numpy's zeroed
    allocation asks for huge pages and leaves the zeroing to the kernel, on first touch, 2 MiB at a
    time, which made allocating the heatmap (not drawing it) several times cheaper on CPU.
    """
    if device.type != "cpu":
        return torch.zeros(numel, dtype=torch.float32, device=device)
    return torch.from_numpy(np.zeros(numel, dtype=np.float32))


def _render_gaussians(
    centre_int: Tensor, radius: Tensor, labels: Tensor, draw: Tensor, num_classes: int,
    height: int, width: int, total: int,
) -> Tensor:
    """Draw every object's Gaussian into a ``[B, C, H, W]`` heatmap, merging by max.

    Args:
        centre_int: LongTensor[B, M, 2] peak cells ``(x, y)``.
        radius: LongTensor[B, M] integer radii (0 where not drawn).
        labels: LongTensor[B, M] class channels.
        draw: BoolTensor[B, M] objects to draw.
        num_classes, height, width: heatmap shape.
        total: number of window pixels over all drawn objects, ``sum((2r+1)^2)``.

    Returns:
        FloatTensor[B, C, H, W] float32 heatmap.
    """
    batch, slots = labels.shape
    device = labels.device
    diameter = 2 * radius + 1  # [B, M]
    counts = torch.where(draw, diameter * diameter, 0).flatten()  # [B*M]
    owner = torch.repeat_interleave(torch.arange(batch * slots, device=device), counts, output_size=total)
    first = torch.cumsum(counts, 0) - counts  # [B*M] first window pixel of each object
    local = torch.arange(total, device=device) - first[owner]  # [T] position inside the window
    r = radius.flatten()[owner]
    d = diameter.flatten()[owner]
    dy = torch.div(local, d, rounding_mode="floor") - r
    dx = local % d - r
    sigma = d.to(_GAUSSIAN_DTYPE) / _SIGMA_DIVISOR
    value = torch.exp(-(dx * dx + dy * dy).to(_GAUSSIAN_DTYPE) / (2 * sigma * sigma))  # [T]
    value = torch.where(value < _GAUSSIAN_EPS, 0.0, value).to(torch.float32)
    px = centre_int[..., 0].flatten()[owner] + dx
    py = centre_int[..., 1].flatten()[owner] + dy
    inside = (px >= 0) & (px < width) & (py >= 0) & (py < height)
    image = torch.div(owner, slots, rounding_mode="floor")
    channel = labels.flatten()[owner]
    flat = ((image * num_classes + channel) * height + py) * width + px
    trash = batch * num_classes * height * width  # one extra cell collects pixels outside the grid
    flat = torch.where(inside, flat, trash)
    heat = _zeros_float32(trash + 1, device)
    heat.scatter_reduce_(0, flat, value, reduce="amax", include_self=True)
    return heat[:trash].view(batch, num_classes, height, width)


def _ignore_mask(clipped: Tensor, ignored: Tensor, height: int, width: int) -> Tensor:
    """Mask that is 0 on the grid cells covered by ignore boxes and 1 elsewhere.

    A cell ``(i, j)`` (column ``i``, row ``j``) is ignored when ``floor(x1) <= i <= ceil(x2)`` and
    ``floor(y1) <= j <= ceil(y2)`` for some ignore box: the smallest integer-aligned box enclosing
    the clipped box, edges included. Computed with a 2-D difference array and two cumulative sums.

    Args:
        clipped: FloatTensor[B, M, 4] clipped xyxy boxes on the output grid.
        ignored: BoolTensor[B, M] boxes that define ignore regions.
        height, width: grid size.

    Returns:
        FloatTensor[B, 1, H, W] float32 mask.
    """
    batch, slots = ignored.shape
    device = clipped.device
    zero = torch.zeros((), dtype=torch.int64, device=device)
    gx0 = torch.where(ignored, clipped[..., 0].floor().long(), zero)
    gy0 = torch.where(ignored, clipped[..., 1].floor().long(), zero)
    gx1 = torch.where(ignored, clipped[..., 2].ceil().long(), zero) + 1
    gy1 = torch.where(ignored, clipped[..., 3].ceil().long(), zero) + 1
    weight = ignored.to(torch.float32)
    image = torch.arange(batch, device=device).unsqueeze(1).expand(batch, slots)
    stride_b, stride_y = (height + 1) * (width + 1), width + 1
    diff = torch.zeros(batch * stride_b, dtype=torch.float32, device=device)
    for ys, xs, sign in ((gy0, gx0, 1.0), (gy0, gx1, -1.0), (gy1, gx0, -1.0), (gy1, gx1, 1.0)):
        diff.index_add_(0, (image * stride_b + ys * stride_y + xs).flatten(), (sign * weight).flatten())
    cover = diff.view(batch, height + 1, width + 1).cumsum(1).cumsum(2)[:, :height, :width]
    return (cover <= 0).to(torch.float32).unsqueeze(1)


def render_targets(
    boxes: Tensor,
    labels: Tensor,
    valid: Tensor,
    *,
    num_classes: int,
    output_size: Sequence[int],
    ignore: Tensor | None = None,
    radius_formula: str = "centernet",
    min_overlap: float = 0.7,
) -> dict[str, Tensor]:
    """Render CenterNet training targets for a padded batch of boxes, on the boxes' device.

    Per object (original ``ctdet`` semantics): clip x to ``[0, W-1]`` and y to ``[0, H-1]``; drop it
    when ``w <= 0`` or ``h <= 0``; radius ``r = max(0, int(R(ceil(h), ceil(w), min_overlap)))``;
    Gaussian with sigma ``(2r+1)/6`` on the window ``[-r, r]^2`` (float64, values below
    ``eps * max`` set to 0), peak 1 at ``ct_int = floor(centre)``, merged into its class channel by
    max. Boxes are processed in float32 like the original. Ignore boxes draw nothing; they zero
    ``heatmap_mask`` on the cells ``[floor(x1), ceil(x2)] x [floor(y1), ceil(y2)]`` of their clipped
    box (ignore boxes that are dropped as degenerate mask nothing).

    Args:
        boxes: FloatTensor[B, M, 4] ``[x1, y1, x2, y2]`` on the output grid, not yet clipped.
        labels: LongTensor[B, M] class ids in ``[0, num_classes)`` (any value in padding slots).
        valid: BoolTensor[B, M], False for padding slots.
        num_classes: number of heatmap channels C.
        output_size: ``(height, width)`` of the output grid.
        ignore: BoolTensor[B, M] or None; True marks ignore regions (COCO iscrowd, VOC difficult).
        radius_formula: name in :data:`RADIUS_FORMULAS`.
        min_overlap: IoU parameter of the radius formula.

    Returns:
        ``heatmap`` FloatTensor[B, C, H, W], ``size`` FloatTensor[B, M, 2] ``(w, h)``,
        ``offset`` FloatTensor[B, M, 2] ``centre - ct_int``, ``index`` LongTensor[B, M]
        ``ct_int_y * W + ct_int_x``, ``mask`` FloatTensor[B, M] (1 for objects drawn as targets,
        0 for padding, dropped and ignore boxes; size/offset/index are 0 there) and
        ``heatmap_mask`` FloatTensor[B, 1, H, W] (1 = counts, 0 = ignore region). All float32.
    """
    _check_inputs(boxes, labels, valid, ignore, output_size)
    if num_classes <= 0:
        raise ValueError(f"render_targets: num_classes must be positive, got {num_classes}")
    formula = _get_formula(radius_formula)
    _check_overlap(min_overlap)
    height, width = int(output_size[0]), int(output_size[1])
    batch = boxes.shape[0]
    device = boxes.device
    labels = labels.to(device=device, dtype=torch.int64)
    valid = valid.to(device)
    ignore = torch.zeros_like(valid) if ignore is None else ignore.to(device)

    boxes = boxes.to(torch.float32)
    x1 = boxes[..., 0].clamp(0, width - 1)
    y1 = boxes[..., 1].clamp(0, height - 1)
    x2 = boxes[..., 2].clamp(0, width - 1)
    y2 = boxes[..., 3].clamp(0, height - 1)
    box_w, box_h = x2 - x1, y2 - y1  # [B, M] float32
    kept = valid & (box_w > 0) & (box_h > 0)
    target = kept & ~ignore  # [B, M] objects drawn on the heatmap
    ignored = kept & ignore  # [B, M] ignore regions

    centre = torch.stack(((x1 + x2) / 2, (y1 + y2) / 2), dim=-1)  # [B, M, 2] float32
    centre_floor = centre.floor()
    centre_int = torch.where(target.unsqueeze(-1), centre_floor, 0.0).long()  # [B, M, 2]

    compute_dtype = torch.float32 if device.type == "mps" else _GAUSSIAN_DTYPE  # no float64 on MPS
    one = torch.ones((), dtype=compute_dtype, device=device)
    safe_h = torch.where(target, box_h.ceil().to(compute_dtype), one)
    safe_w = torch.where(target, box_w.ceil().to(compute_dtype), one)
    radius = formula(safe_h, safe_w, min_overlap).floor().clamp_min(0).long()
    radius = torch.where(target, radius, 0)  # [B, M]

    diameter = 2 * radius + 1
    bad_label = target & ((labels < 0) | (labels >= num_classes))
    total, num_bad, num_ignored = torch.stack(
        (torch.where(target, diameter * diameter, 0).sum(), bad_label.sum(), ignored.sum())
    ).tolist()  # the one host synchronisation: window pixel count, label check, ignore regions
    if num_bad:
        b, m = (int(v) for v in bad_label.nonzero()[0])
        raise ValueError(
            f"render_targets: labels[{b}, {m}] = {int(labels[b, m])} is outside [0, {num_classes})"
        )
    heatmap = _render_gaussians(
        centre_int, radius, torch.where(target, labels, 0), target, num_classes, height, width, total
    )

    target_f = target.unsqueeze(-1)
    size = torch.where(target_f, torch.stack((box_w, box_h), dim=-1), 0.0)
    offset = torch.where(target_f, centre - centre_floor, 0.0)
    index = centre_int[..., 1] * width + centre_int[..., 0]
    if num_ignored:
        heatmap_mask = _ignore_mask(torch.stack((x1, y1, x2, y2), dim=-1), ignored, height, width)
    else:
        heatmap_mask = torch.ones(batch, 1, height, width, dtype=torch.float32, device=device)
    return {
        "heatmap": heatmap,
        "size": size,
        "offset": offset,
        "index": index,
        "mask": target.to(torch.float32),
        "heatmap_mask": heatmap_mask,
    }
