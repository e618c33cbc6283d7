"""TTFNet training targets (Liu et al., AAAI 2020): elliptical Gaussian heatmaps and dense box targets.

Every object draws an elliptical Gaussian whose radii follow the box height and width (``alpha``); every
output cell inside the (``beta``) Gaussian of a box regresses that box's input-pixel corners, with a weight
that spreads the box's share (``log(area)`` by default) over its cells by their Gaussian value. Where the
areas of several boxes overlap, the smallest box wins. The semantics reproduce TTFNet's own target code
(the tests compare with targets it produced). Like :mod:`centernet.targets.centernet`, the rendering is
vectorised over the batch: every window pixel of every object is enumerated once, the heatmap is merged
with ``scatter_reduce(amax)`` and the overwrite order becomes a per-cell ``amax`` of the objects' drawing
ranks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from centernet.targets.centernet import (
    _GAUSSIAN_DTYPE,
    _GAUSSIAN_EPS,
    _SIGMA_DIVISOR,
    _check_inputs,
    _ignore_mask,
    _zeros_float32,
)

TTF_ALPHA = 0.54  # TTFNet's released heatmap (alpha) and box-area (beta) Gaussian scale
BOX_WEIGHT_MODES = ("log_area", "area", "sqrt_area", "uniform")
_CALLER = "render_ttf_targets"
_NO_BOX = -1.0  # box_target value of cells that regress no box


class _Windows(NamedTuple):
    """Every pixel of every drawn object's Gaussian window, flattened to ``T`` entries."""

    owner: Tensor  # LongTensor[T] object slot ``b * M + m``
    pixel: Tensor  # LongTensor[T] cell ``y * W + x`` inside the image (0 where ``keep`` is False)
    value: Tensor  # FloatTensor[T] float32 Gaussian value
    keep: Tensor  # BoolTensor[T] inside the grid and above the Gaussian's cut-off


def box_area_weight(area: Tensor, mode: str) -> Tensor:
    """The share of the regression loss each box gets, spread over its cells.

    Args:
        area: FloatTensor[...] box areas in input pixels, ``(x2 - x1 + 1) * (y2 - y1 + 1)``.
        mode: one of :data:`BOX_WEIGHT_MODES` (``log_area`` is TTFNet's).

    Returns:
        FloatTensor[...] ``log(area)``, ``area``, ``sqrt(area)`` or 1.
    """
    if mode == "log_area":
        return area.log()
    if mode == "area":
        return area
    if mode == "sqrt_area":
        return area.sqrt()
    if mode == "uniform":
        return torch.ones_like(area)
    raise ValueError(f"target.box_weight: {mode!r} is not one of {list(BOX_WEIGHT_MODES)}")


def _check_scale(name: str, value: float) -> None:
    if not 0.0 < value <= 1.0:
        raise ValueError(f"target.{name} must lie in (0, 1], got {value}")


def _gaussian_radii(grid_boxes: Tensor, drawn: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """Radii ``int(h / 2 * scale)``, ``int(w / 2 * scale)`` of grid-clipped boxes; LongTensor[B, M] each."""
    height = grid_boxes[..., 3] - grid_boxes[..., 1]
    width = grid_boxes[..., 2] - grid_boxes[..., 0]
    radius_h = torch.where(drawn, (height / 2.0 * scale).long(), 0)
    radius_w = torch.where(drawn, (width / 2.0 * scale).long(), 0)
    return radius_h, radius_w


def _window_count(radius_h: Tensor, radius_w: Tensor, drawn: Tensor) -> Tensor:
    """LongTensor[B*M] pixels of each object's ``(2 r_h + 1) x (2 r_w + 1)`` window, 0 if not drawn."""
    return torch.where(drawn, (2 * radius_h + 1) * (2 * radius_w + 1), 0).flatten()


def _elliptical_windows(
    centre: Tensor, radius_h: Tensor, radius_w: Tensor, counts: Tensor, total: int, height: int, width: int
) -> _Windows:
    """Enumerate the elliptical Gaussian windows of all objects.

    The Gaussian of an object is ``exp(-(dx^2 / (2 sx^2) + dy^2 / (2 sy^2)))`` on ``[-r_w, r_w] x
    [-r_h, r_h]`` around its centre, ``sx = (2 r_w + 1) / 6``, ``sy = (2 r_h + 1) / 6``, computed in
    float64 with values below ``eps`` (its maximum is 1) set to 0, then stored as float32.

    Args:
        centre: LongTensor[B, M, 2] centre cells ``(x, y)``.
        radius_h, radius_w: LongTensor[B, M] radii.
        counts: LongTensor[B*M] window pixels per object (:func:`_window_count`).
        total: ``counts.sum()``.
        height, width: grid size.
    """
    device = centre.device
    owner = torch.repeat_interleave(torch.arange(counts.numel(), device=device), counts, output_size=total)
    local = torch.arange(total, device=device) - (torch.cumsum(counts, 0) - counts)[owner]
    r_h, r_w = radius_h.flatten()[owner], radius_w.flatten()[owner]
    d_h, d_w = 2 * r_h + 1, 2 * r_w + 1
    dy = torch.div(local, d_w, rounding_mode="floor") - r_h
    dx = local % d_w - r_w
    compute_dtype = torch.float32 if device.type == "mps" else _GAUSSIAN_DTYPE  # no float64 on MPS
    sigma_x = d_w.to(compute_dtype) / _SIGMA_DIVISOR
    sigma_y = d_h.to(compute_dtype) / _SIGMA_DIVISOR
    exponent = (dx * dx).to(compute_dtype) / (2 * sigma_x * sigma_x) + (dy * dy).to(compute_dtype) / (
        2 * sigma_y * sigma_y
    )
    value = torch.exp(-exponent)
    value = torch.where(value < _GAUSSIAN_EPS, 0.0, value).to(torch.float32)
    px = centre[..., 0].flatten()[owner] + dx
    py = centre[..., 1].flatten()[owner] + dy
    keep = (px >= 0) & (px < width) & (py >= 0) & (py < height) & (value > 0)
    pixel = torch.where(keep, py * width + px, 0)
    return _Windows(owner, pixel, value, keep)


def _draw_heatmap(windows: _Windows, labels: Tensor, num_classes: int, height: int, width: int) -> Tensor:
    """Max-merge the windows into FloatTensor[B, C, H, W] (object slot ``b * M + m``, class ``labels[b, m]``)."""
    batch, slots = labels.shape
    image = torch.div(windows.owner, slots, rounding_mode="floor")
    channel = labels.flatten()[windows.owner]
    trash = batch * num_classes * height * width  # one extra cell collects the dropped pixels
    flat = torch.where(windows.keep, (image * num_classes + channel) * height * width + windows.pixel, trash)
    heat = _zeros_float32(trash + 1, labels.device)
    heat.scatter_reduce_(0, flat, windows.value, reduce="amax", include_self=True)
    return heat[:trash].view(batch, num_classes, height, width)


def _draw_ranks(area: Tensor, drawn: Tensor) -> Tensor:
    """LongTensor[B, M]: position of each object in its image's drawing order (largest area first).

    A later position overwrites an earlier one; equal areas are drawn in slot order (stable sort).
    """
    slots = area.shape[1]
    order = torch.where(drawn, area, -torch.inf).argsort(dim=1, descending=True, stable=True)
    positions = torch.arange(slots, device=area.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


def _draw_box_targets(
    windows: _Windows, ranks: Tensor, boxes: Tensor, area_weight: Tensor, height: int, width: int
) -> tuple[Tensor, Tensor]:
    """Give every cell the box of the last-drawn object whose window covers it.

    Args:
        windows: the beta-Gaussian windows.
        ranks: LongTensor[B, M] drawing positions (:func:`_draw_ranks`).
        boxes: FloatTensor[B, M, 4] input-pixel boxes.
        area_weight: FloatTensor[B, M] share of each box (:func:`box_area_weight`).
        height, width: grid size.

    Returns:
        ``box_target`` FloatTensor[B, 4, H, W] (-1 where no box) and ``box_weight`` FloatTensor[B, 1, H, W].
    """
    batch, slots = ranks.shape
    device = boxes.device
    cells = batch * height * width
    image = torch.div(windows.owner, slots, rounding_mode="floor")
    cell = torch.where(windows.keep, image * height * width + windows.pixel, cells)  # [T], trash = cells
    rank = ranks.flatten()[windows.owner]
    latest = torch.full((cells + 1,), -1, dtype=torch.int64, device=device)
    latest.scatter_reduce_(0, cell, rank, reduce="amax", include_self=True)
    # Ranks are unique within an image, so exactly one window pixel wins each covered cell.
    winner_cell = torch.where(windows.keep & (rank == latest[cell]), cell, cells)
    kept_value = torch.where(windows.keep, windows.value, 0.0)
    value_sum = torch.zeros(batch * slots, dtype=torch.float32, device=device)
    value_sum.index_add_(0, windows.owner, kept_value)  # a box's weights are normalised over all its cells
    # Every drawn box has its centre cell (value 1) on the grid, so its sum is >= 1; the clamp only keeps
    # the 0/0 of undrawn slots finite.
    weight = kept_value * area_weight.flatten()[windows.owner] / value_sum[windows.owner].clamp_min(_GAUSSIAN_EPS)
    box_target = torch.full((cells + 1, 4), _NO_BOX, dtype=torch.float32, device=device)
    box_target[winner_cell] = boxes.reshape(-1, 4)[windows.owner]
    box_weight = torch.zeros(cells + 1, dtype=torch.float32, device=device)
    box_weight[winner_cell] = weight
    box_target = box_target[:cells].view(batch, height, width, 4).permute(0, 3, 1, 2).contiguous()
    return box_target, box_weight[:cells].view(batch, 1, height, width)


def _clip_to_image(boxes: Tensor, height: int, width: int) -> Tensor:
    """Clip FloatTensor[B, M, 4] boxes to the pixels ``[0, width - 1] x [0, height - 1]``."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(
        (x1.clamp(0, width - 1), y1.clamp(0, height - 1), x2.clamp(0, width - 1), y2.clamp(0, height - 1)), dim=-1
    )


def render_ttf_targets(
    boxes: Tensor,
    labels: Tensor,
    valid: Tensor,
    *,
    num_classes: int,
    output_size: Sequence[int],
    down_ratio: int,
    alpha: float = TTF_ALPHA,
    beta: float = TTF_ALPHA,
    box_weight: str = "log_area",
    ignore: Tensor | None = None,
) -> dict[str, Tensor]:
    """Render TTFNet training targets for a padded batch of input-pixel boxes, on the boxes' device.

    Per object: the box is clipped to the input image ``[0, W*d - 1] x [0, H*d - 1]`` (TTFNet's data
    pipeline does this before its target code) and dropped if its width or height is then <= 0. Its
    centre cell is ``int((x1 + x2) / 2 / d)``, ``int((y1 + y2) / 2 / d)``; ``h``, ``w`` are those of the
    box divided by ``d`` and clipped to the grid. The heatmap Gaussian has radii ``int(h / 2 * alpha)``
    and ``int(w / 2 * alpha)`` (sigma ``(2 r + 1) / 6`` per axis) and is max-merged into the object's
    class channel. The cells where its ``beta`` Gaussian is positive regress the clipped box, weighted
    by that Gaussian normalised to sum 1 over the box's cells times :func:`box_area_weight` of
    ``area = (x2 - x1 + 1) * (y2 - y1 + 1)``. Boxes are drawn from the largest area to the smallest,
    so a smaller box overwrites the box target and weight of a larger one where they overlap. Ignore
    boxes draw nothing and zero ``heatmap_mask`` as in :func:`centernet.targets.render_targets`.

    Args:
        boxes: FloatTensor[B, M, 4] ``[x1, y1, x2, y2]`` in input pixels, not yet clipped.
        labels: LongTensor[B, M] class ids in ``[0, num_classes)`` (any value in padding slots).
        valid: BoolTensor[B, M], False for padding slots.
        num_classes: number of heatmap channels C.
        output_size: ``(height, width)`` of the output grid.
        down_ratio: input pixels per output cell ``d``.
        alpha: heatmap Gaussian scale, in (0, 1].
        beta: box-area Gaussian scale, in (0, 1].
        box_weight: one of :data:`BOX_WEIGHT_MODES`.
        ignore: BoolTensor[B, M] or None; True marks ignore regions.

    Returns:
        ``heatmap`` FloatTensor[B, C, H, W], ``box_target`` FloatTensor[B, 4, H, W] (input-pixel
        ``[x1, y1, x2, y2]`` per cell, -1 where none), ``box_weight`` FloatTensor[B, 1, H, W] (0 where
        none) and ``heatmap_mask`` FloatTensor[B, 1, H, W] (1 = counts, 0 = ignore region). All float32.
    """
    _check_inputs(boxes, labels, valid, ignore, output_size, caller=_CALLER)
    if num_classes <= 0:
        raise ValueError(f"{_CALLER}: num_classes must be positive, got {num_classes}")
    if down_ratio <= 0:
        raise ValueError(f"{_CALLER}: down_ratio must be positive, got {down_ratio}")
    _check_scale("alpha", alpha)
    _check_scale("beta", beta)
    box_area_weight(torch.ones(()), box_weight)  # rejects an unknown mode before any work
    height, width = int(output_size[0]), int(output_size[1])
    device = boxes.device
    labels = labels.to(device=device, dtype=torch.int64)
    valid = valid.to(device)
    ignore = torch.zeros_like(valid) if ignore is None else ignore.to(device)

    clipped = _clip_to_image(boxes.to(torch.float32), height * down_ratio, width * down_ratio)
    x1, y1, x2, y2 = clipped.unbind(-1)
    kept = valid & (x2 > x1) & (y2 > y1)
    drawn = kept & ~ignore
    ignored = kept & ignore
    grid_boxes = _clip_to_image(clipped / down_ratio, height, width)
    centre = torch.stack(((x1 + x2) / 2, (y1 + y2) / 2), dim=-1) / down_ratio
    centre = torch.where(drawn.unsqueeze(-1), centre, 0.0).long()  # [B, M, 2] truncation = floor (>= 0)
    area = (x2 - x1 + 1) * (y2 - y1 + 1)  # [B, M] TTFNet's pixel convention

    radii = {"alpha": _gaussian_radii(grid_boxes, drawn, alpha), "beta": _gaussian_radii(grid_boxes, drawn, beta)}
    counts = {name: _window_count(*r, drawn) for name, r in radii.items()}
    bad_label = drawn & ((labels < 0) | (labels >= num_classes))
    totals = torch.stack((counts["alpha"].sum(), counts["beta"].sum(), bad_label.sum(), ignored.sum()))
    total_alpha, total_beta, num_bad, num_ignored = totals.tolist()  # the one host synchronisation
    if num_bad:
        b, m = (int(v) for v in bad_label.nonzero()[0])
        raise ValueError(f"{_CALLER}: labels[{b}, {m}] = {int(labels[b, m])} is outside [0, {num_classes})")

    heat_windows = _elliptical_windows(centre, *radii["alpha"], counts["alpha"], total_alpha, height, width)
    heatmap = _draw_heatmap(heat_windows, torch.where(drawn, labels, 0), num_classes, height, width)
    box_windows = heat_windows if beta == alpha else _elliptical_windows(
        centre, *radii["beta"], counts["beta"], total_beta, height, width
    )
    box_target, weight = _draw_box_targets(
        box_windows, _draw_ranks(area, drawn), clipped, box_area_weight(area, box_weight), height, width
    )
    if num_ignored:
        heatmap_mask = _ignore_mask(grid_boxes, ignored, height, width)
    else:
        heatmap_mask = torch.ones(boxes.shape[0], 1, height, width, dtype=torch.float32, device=device)
    return {"heatmap": heatmap, "box_target": box_target, "box_weight": weight, "heatmap_mask": heatmap_mask}
