"""Decode CenterNet head outputs into boxes, and map them back to image pixels.

:func:`decode_detections` reproduces the original ``ctdet_decode``: sigmoid, 3x3 max-pool peak
keep, top-K per class then top-K overall, centre = peak cell + offset, box = centre -/+ size / 2.
:func:`decode_ltrb_detections` does the same for an ``ltrb`` head (TTFNet): the same peaks, box =
peak cell -/+ the predicted distances to its sides. :func:`decode_maps` picks one by the maps' keys.
:func:`detections_to_image` is the original post-process: the inverse crop affine on the corners.
:class:`GraphDecoder` is the same decoding written for graph export (ONNX / TorchScript): static K,
``max_pool2d`` peak keep and no Python control flow on tensor shapes (the library decoder chunks over
planes on CPU, which a trace would freeze to the export batch size); the tests check both agree.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from centernet.utils.affine import apply_affine_to_boxes, get_affine_transform

logger = logging.getLogger(__name__)

# Peak keep: a cell is a peak when it equals the maximum of its PEAK_KERNEL x PEAK_KERNEL neighbourhood.
PEAK_KERNEL = 3
# The detection row every decoder, merge and evaluator shares: ``[x1, y1, x2, y2, score, class]``.
DET_COLUMNS = ("x1", "y1", "x2", "y2", "score", "class")
NUM_DET_COLUMNS = len(DET_COLUMNS)
BOX_COORDS = 4  # rows[:, :BOX_COORDS] are the box corners
SCORE_COLUMN = DET_COLUMNS.index("score")
CLASS_COLUMN = DET_COLUMNS.index("class")
_LTRB_CHANNELS = 4  # (left, top, right, bottom)
# On CPU, decode this many heatmap cells at a time (cache-sized; accelerators take the whole batch).
_CPU_CHUNK_ELEMENTS = 1 << 18


def _check_maps(heatmap_logits: Tensor, caller: str = "decode_detections", **box_maps: Tensor) -> None:
    """Validate the head output shapes (one-line errors): every box map is ``[B, D, H, W]`` with D = 2 or 4."""
    if heatmap_logits.dim() != 4:
        raise ValueError(f"{caller}: heatmap_logits must be [B, C, H, W], got {tuple(heatmap_logits.shape)}")
    batch, _, height, width = heatmap_logits.shape
    for name, tensor in box_maps.items():
        expected = (batch, _LTRB_CHANNELS if name == "ltrb" else 2, height, width)
        if tuple(tensor.shape) != expected:
            raise ValueError(f"{caller}: {name} must be {expected}, got {tuple(tensor.shape)}")


def _neighbourhood_max(heat: Tensor, radius: int, dim: int, out: Tensor) -> Tensor:
    """Write into ``out`` the maximum of ``heat`` over ``[i - radius, i + radius]`` along ``dim``.

    Cells past the edge are ignored (as ``max_pool2d``'s ``-inf`` padding).

    Args:
        heat: FloatTensor of any shape.
        radius: half-width of the window, ``>= 0``.
        dim: axis to reduce along.
        out: FloatTensor of the shape of ``heat`` (not aliasing it).

    Returns:
        ``out``.
    """
    length = heat.shape[dim]
    out.copy_(heat)
    for shift in range(1, min(radius, length - 1) + 1):
        head, tail = out.narrow(dim, 0, length - shift), out.narrow(dim, shift, length - shift)
        torch.maximum(head, heat.narrow(dim, shift, length - shift), out=head)
        torch.maximum(tail, heat.narrow(dim, 0, length - shift), out=tail)
    return out


def _peak_keep_into(heat: Tensor, radius: int, row_max: Tensor, out: Tensor) -> Tensor:
    """:func:`peak_keep` with caller-provided buffers ``row_max`` and ``out`` (shape of ``heat``)."""
    _neighbourhood_max(heat, radius, -1, row_max)
    _neighbourhood_max(row_max, radius, -2, out)
    return out.eq_(heat).mul_(heat)  # 1.0 / 0.0 then * heat, in place: no bool tensor


def _check_kernel(kernel: int) -> int:
    """Return the radius of an odd ``kernel``; raise ValueError otherwise."""
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"peak kernel must be a positive odd int, got {kernel}")
    return (kernel - 1) // 2


def peak_keep(heat: Tensor, kernel: int = PEAK_KERNEL) -> Tensor:
    """Zero every cell that is not the maximum of its ``kernel x kernel`` neighbourhood.

    Bit-identical to ``heat * (max_pool2d(heat, kernel, 1, kernel // 2) == heat)``; the square
    maximum is computed as two separable 1-D maxima of shifted views, which is several times faster
    on CPU than ``max_pool2d`` (``max`` is exact, so the result does not change).

    Args:
        heat: FloatTensor[B, C, H, W] scores (after the sigmoid).
        kernel: odd neighbourhood size.

    Returns:
        FloatTensor[B, C, H, W] ``heat * (maxpool(heat) == heat)``.
    """
    radius = _check_kernel(kernel)
    return _peak_keep_into(heat, radius, torch.empty_like(heat), torch.empty_like(heat))


def _class_topk(heatmap_logits: Tensor, k_class: int, chunk_planes: int) -> tuple[Tensor, Tensor]:
    """Sigmoid, peak keep and top-``k_class`` of every ``[H, W]`` class plane, ``chunk_planes`` at a time.

    Working on a few planes at a time through three reused buffers keeps the data in cache and
    avoids allocating (and page-faulting) several full ``[B, C, H, W]`` maps.

    Args:
        heatmap_logits: FloatTensor[B, C, H, W] float32 logits.
        k_class: candidates per class plane, ``<= H * W``.
        chunk_planes: planes per chunk, ``>= 1``.

    Returns:
        ``scores`` FloatTensor[B, C, k_class] and ``index`` LongTensor[B, C, k_class] (flat cells).
    """
    batch, num_classes, height, width = heatmap_logits.shape
    planes = heatmap_logits.reshape(batch * num_classes, height, width)
    total = planes.shape[0]
    scores = planes.new_empty(total, k_class)
    index = torch.empty(total, k_class, dtype=torch.int64, device=planes.device)
    step = max(1, min(chunk_planes, total))
    buffers = [planes.new_empty(step, height, width) for _ in range(3)]
    radius = _check_kernel(PEAK_KERNEL)
    for start in range(0, total, step):
        count = min(step, total - start)
        heat, row_max, kept = (buf[:count] for buf in buffers)
        torch.sigmoid(planes[start : start + count], out=heat)
        _peak_keep_into(heat, radius, row_max, kept)
        torch.topk(
            kept.view(count, height * width), k_class, dim=1,
            out=(scores[start : start + count], index[start : start + count]),
        )
    return scores.view(batch, num_classes, k_class), index.view(batch, num_classes, k_class)


def _gather_map(maps: Tensor, index: Tensor) -> Tensor:
    """Read ``maps [B, 2, H, W]`` at flat cells ``index [B, K]``; returns ``[B, K, 2]``."""
    batch, channels = maps.shape[:2]
    flat = maps.reshape(batch, channels, maps.shape[2] * maps.shape[3])  # [B, 2, H*W]
    picked = flat.gather(2, index.unsqueeze(1).expand(batch, channels, index.shape[1]))  # [B, 2, K]
    return picked.transpose(1, 2)


def _top_peaks(heatmap_logits: Tensor, k: int, caller: str) -> tuple[Tensor, Tensor, Tensor]:
    """The top-``k`` heatmap peaks of each image: top-K per class, then top-K overall.

    Args:
        heatmap_logits: FloatTensor[B, C, H, W] logits.
        k: detections per image, ``>= 0``.
        caller: name starting the error message.

    Returns:
        ``scores`` FloatTensor[B, K], ``classes`` LongTensor[B, K] and ``index`` LongTensor[B, K] (flat
        cell ``y * W + x``), best first, ``K = min(k, C * H * W)``.
    """
    if k < 0:
        raise ValueError(f"{caller}: k must be >= 0, got {k}")
    batch, num_classes, height, width = heatmap_logits.shape
    k_class = min(k, height * width)
    on_cpu = heatmap_logits.device.type == "cpu"
    chunk = _CPU_CHUNK_ELEMENTS // max(height * width, 1) if on_cpu else batch * num_classes
    class_scores, class_index = _class_topk(heatmap_logits.float(), k_class, chunk)  # [B, C, k_class]
    k_all = min(k, num_classes * k_class)
    scores, order = class_scores.view(batch, num_classes * k_class).topk(k_all, dim=1)  # [B, K]
    classes = torch.div(order, max(k_class, 1), rounding_mode="floor")  # [B, K]
    index = class_index.view(batch, num_classes * k_class).gather(1, order)  # [B, K] flat cell
    return scores, classes, index


@torch.no_grad()
def decode_detections(heatmap_logits: Tensor, size: Tensor, offset: Tensor, *, k: int = 100) -> Tensor:
    """Turn head outputs into the top-``k`` detections of each image, on the output grid.

    Args:
        heatmap_logits: FloatTensor[B, C, H, W] heatmap logits (sigmoid is applied here).
        size: FloatTensor[B, 2, H, W] box ``(w, h)`` in output pixels.
        offset: FloatTensor[B, 2, H, W] sub-pixel centre offset ``(dx, dy)``.
        k: detections per image; clamped to ``C * H * W``.

    Returns:
        FloatTensor[B, K, 6] float32 rows ``[x1, y1, x2, y2, score, class]`` on the output grid, best
        first, with ``K = min(k, C * H * W)``; the class column holds integer class ids.
    """
    _check_maps(heatmap_logits, size=size, offset=offset)
    scores, classes, index = _top_peaks(heatmap_logits, k, "decode_detections")
    width = heatmap_logits.shape[-1]
    ys = torch.div(index, width, rounding_mode="floor").float()
    xs = (index % width).float()
    boxes = centre_size_boxes(xs, ys, _gather_map(offset.float(), index), _gather_map(size.float(), index))
    return torch.cat((boxes, scores.unsqueeze(-1), classes.float().unsqueeze(-1)), dim=-1)


def centre_size_boxes(xs: Tensor, ys: Tensor, offset: Tensor, size: Tensor) -> Tensor:
    """Boxes ``[..., 4]`` (x1, y1, x2, y2) from peak cells ``xs, ys [...]`` and the offset/size read there.

    Args:
        xs, ys: peak cell columns and rows, float ``[B, K]``.
        offset: ``[B, K, 2]`` sub-pixel centre offsets ``(dx, dy)``.
        size: ``[B, K, 2]`` box ``(w, h)``.
    """
    cx, cy = xs + offset[..., 0], ys + offset[..., 1]
    half_w, half_h = size[..., 0] / 2, size[..., 1] / 2
    return torch.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), dim=-1)


@torch.no_grad()
def decode_ltrb_detections(heatmap_logits: Tensor, ltrb: Tensor, *, down_ratio: int, k: int = 100) -> Tensor:
    """Top-``k`` detections of an ``ltrb`` head (TTFNet), on the output grid like :func:`decode_detections`.

    The peaks are those of :func:`decode_detections`; the box of peak cell ``(x, y)`` is
    ``[x*d - l, y*d - t, x*d + r, y*d + b]`` in input pixels, divided by ``d`` to land on the output grid.

    Args:
        heatmap_logits: FloatTensor[B, C, H, W] heatmap logits (sigmoid is applied here).
        ltrb: FloatTensor[B, 4, H, W] distances from each cell to the box sides, in input pixels.
        down_ratio: input pixels per output cell ``d``.
        k: detections per image; clamped to ``C * H * W``.

    Returns:
        FloatTensor[B, K, 6] float32 rows ``[x1, y1, x2, y2, score, class]`` on the output grid, best first.
    """
    _check_maps(heatmap_logits, "decode_ltrb_detections", ltrb=ltrb)
    if down_ratio <= 0:
        raise ValueError(f"decode_ltrb_detections: down_ratio must be positive, got {down_ratio}")
    scores, classes, index = _top_peaks(heatmap_logits, k, "decode_ltrb_detections")
    width = heatmap_logits.shape[-1]
    ys = torch.div(index, width, rounding_mode="floor").float()
    xs = (index % width).float()
    sides = _gather_map(ltrb.float(), index) / down_ratio  # [B, K, 4] in output cells
    return torch.stack(
        (xs - sides[..., 0], ys - sides[..., 1], xs + sides[..., 2], ys + sides[..., 3], scores, classes.float()),
        dim=-1,
    )


def decode_maps(maps: Mapping[str, Tensor], *, down_ratio: int, k: int = 100) -> Tensor:
    """Decode a head's output dict: :func:`decode_ltrb_detections` when it has ``ltrb``, else
    :func:`decode_detections` (``size`` and ``offset``); same ``[B, K, 6]`` rows on the output grid."""
    if "ltrb" in maps:
        return decode_ltrb_detections(maps["heatmap"], maps["ltrb"], down_ratio=down_ratio, k=k)
    return decode_detections(maps["heatmap"], maps["size"], maps["offset"], k=k)


def unflip_ltrb(ltrb_flipped: Tensor, *, down_ratio: int) -> Tensor:
    """The ``ltrb`` map of a mirrored input, expressed for the un-mirrored input (flip test-time augmentation).

    The mirror is ``u -> W_in - 1 - u`` (pixel-index boxes). Cell ``x`` of the un-mirrored map sits at
    ``x * d``; the mirrored pass's cell ``W - 1 - x`` sits at ``x * d + d - 1`` in un-mirrored pixels, so
    besides flipping the width and swapping left/right, the distances move by ``d - 1``.

    Args:
        ltrb_flipped: FloatTensor[B, 4, H, W] predicted on the mirrored input.
        down_ratio: input pixels per output cell ``d``.

    Returns:
        FloatTensor[B, 4, H, W] ``(r' - (d - 1), t', l' + (d - 1), b')`` of the width-flipped map;
        average it with the un-mirrored pass's ``ltrb``.
    """
    left, top, right, bottom = ltrb_flipped.flip(-1).unbind(1)
    shift = down_ratio - 1
    return torch.stack((right - shift, top, left + shift, bottom), dim=1)


def detections_to_image(
    dets: np.ndarray | Tensor,
    center: Sequence[float] | np.ndarray,
    scale: float,
    output_size: Sequence[int],
) -> np.ndarray:
    """Map detections from the output grid back to source-image pixels (the original post-process).

    Args:
        dets: ``[K, 6]`` rows ``[x1, y1, x2, y2, score, class]`` on the output grid.
        center: ``(cx, cy)`` of the crop in image pixels (validation: ``(W / 2, H / 2)``).
        scale: side of the square crop in image pixels (validation: ``max(H, W)``).
        output_size: ``(height, width)`` of the output grid, as in :func:`render_targets`.

    Returns:
        float32 array ``[K, 6]``, same row order, boxes in image pixels; score and class unchanged.
    """
    if isinstance(dets, Tensor):
        dets = dets.detach().cpu().numpy()
    dets = np.array(dets, dtype=np.float32, copy=True).reshape(-1, NUM_DET_COLUMNS)
    out_h, out_w = int(output_size[0]), int(output_size[1])
    inverse = get_affine_transform(center, scale, (out_w, out_h), inverse=True)
    dets[:, :BOX_COORDS] = apply_affine_to_boxes(dets[:, :BOX_COORDS], inverse)
    return dets


def batch_detections_to_image(
    dets: np.ndarray | Tensor,
    centers: Sequence[Sequence[float]] | np.ndarray,
    scales: Sequence[float] | np.ndarray,
    output_size: Sequence[int],
) -> np.ndarray:
    """Apply :func:`detections_to_image` to every image of a batch.

    Args:
        dets: ``[B, K, 6]`` detections on the output grid (as returned by :func:`decode_detections`).
        centers: ``[B, 2]`` crop centres ``(cx, cy)`` in image pixels.
        scales: ``[B]`` crop sides in image pixels.
        output_size: ``(height, width)`` of the output grid.

    Returns:
        float32 array ``[B, K, 6]`` in image pixels.
    """
    if isinstance(dets, Tensor):
        dets = dets.detach().cpu().numpy()
    dets = np.asarray(dets, dtype=np.float32)
    if dets.ndim != 3 or dets.shape[-1] != NUM_DET_COLUMNS:
        raise ValueError(f"batch_detections_to_image: dets must be [B, K, 6], got {dets.shape}")
    if len(centers) != len(dets) or len(scales) != len(dets):
        raise ValueError(
            f"batch_detections_to_image: got {len(dets)} images but {len(centers)} centers "
            f"and {len(scales)} scales"
        )
    mapped = [detections_to_image(d, c, float(s), output_size) for d, c, s in zip(dets, centers, scales)]
    return np.stack(mapped) if mapped else np.zeros((0, *dets.shape[1:]), dtype=np.float32)


class GraphDecoder(nn.Module):
    """Top-``k`` decoding inside an exported graph (same results as :func:`decode_detections` and
    :func:`decode_ltrb_detections`).

    Args:
        k: detections per image (clamped to ``C * H * W`` for the export's map size).
        output_stride: input pixels per output cell; boxes are returned on the input grid.
    """

    def __init__(self, k: int, output_stride: int) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"GraphDecoder: k must be >= 1, got {k}")
        self.k = int(k)
        self.output_stride = float(output_stride)

    def _peaks(self, heatmap: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``scores``, ``classes``, flat ``index`` and the peak cells ``xs``, ``ys`` ``[B, K]``, best first."""
        _, num_classes, height, width = heatmap.shape
        heat = heatmap.float().sigmoid()
        pooled = F.max_pool2d(heat, PEAK_KERNEL, stride=1, padding=(PEAK_KERNEL - 1) // 2)
        heat = heat * (pooled == heat).to(heat.dtype)
        k_class = min(self.k, int(height) * int(width))
        class_scores, class_index = heat.flatten(2).topk(k_class, dim=2)  # [B, C, k_class]
        k_all = min(self.k, int(num_classes) * k_class)
        scores, order = class_scores.flatten(1).topk(k_all, dim=1)  # [B, K]
        classes = torch.div(order, k_class, rounding_mode="floor")
        index = class_index.flatten(1).gather(1, order)  # [B, K] flat cells
        ys = torch.div(index, width, rounding_mode="floor").to(heat.dtype)
        xs = (index % width).to(heat.dtype)
        return scores, classes, index, xs, ys

    def forward(self, heatmap: Tensor, size: Tensor, offset: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Args: ``heatmap [B, C, H, W]`` logits, ``size``/``offset`` ``[B, 2, H, W]``.

        Returns:
            ``boxes [B, K, 4]`` xyxy on the input grid, ``scores [B, K]``, ``classes [B, K]`` int64.
        """
        scores, classes, index, xs, ys = self._peaks(heatmap)
        boxes = centre_size_boxes(xs, ys, _gather_map(offset.float(), index), _gather_map(size.float(), index))
        return boxes * self.output_stride, scores, classes

    def decode_ltrb(self, heatmap: Tensor, ltrb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Args: ``heatmap [B, C, H, W]`` logits, ``ltrb [B, 4, H, W]`` distances in input pixels.

        Returns:
            ``boxes [B, K, 4]`` ``[x*s - l, y*s - t, x*s + r, y*s + b]`` on the input grid, ``scores``,
            ``classes``, as :meth:`forward`.
        """
        scores, classes, index, xs, ys = self._peaks(heatmap)
        sides = _gather_map(ltrb.float(), index)  # [B, K, 4] input pixels
        cx, cy = xs * self.output_stride, ys * self.output_stride
        boxes = torch.stack((cx - sides[..., 0], cy - sides[..., 1], cx + sides[..., 2], cy + sides[..., 3]), dim=-1)
        return boxes, scores, classes

    def decode_maps(self, maps: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Decode a head's output dict: :meth:`decode_ltrb` when it has ``ltrb``, else :meth:`forward`."""
        if "ltrb" in maps:
            return self.decode_ltrb(maps["heatmap"], maps["ltrb"])
        return self(maps["heatmap"], maps["size"], maps["offset"])
