"""The original ``ctdet_decode``: sigmoid, ``max_pool2d`` peak keep over the whole map, two top-K passes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

PEAK_KERNEL = 3


@torch.no_grad()
def reference_decode(heatmap_logits: Tensor, size: Tensor, offset: Tensor, k: int = 100) -> Tensor:
    """``[B, K, 6]`` rows ``[x1, y1, x2, y2, score, class]`` on the output grid, the original way."""
    batch, num_classes, height, width = heatmap_logits.shape
    heat = heatmap_logits.sigmoid()
    pooled = F.max_pool2d(heat, PEAK_KERNEL, stride=1, padding=PEAK_KERNEL // 2)
    heat = heat * (pooled == heat).float()
    scores, inds = heat.view(batch, num_classes, -1).topk(k)  # [B, C, K]
    inds = inds % (height * width)
    ys, xs = (inds // width).float(), (inds % width).float()
    score, order = scores.view(batch, -1).topk(k)  # [B, K]
    classes = (order // k).float()
    inds = inds.view(batch, -1).gather(1, order)
    ys = ys.view(batch, -1).gather(1, order)
    xs = xs.view(batch, -1).gather(1, order)
    off = offset.view(batch, 2, -1).gather(2, inds.unsqueeze(1).expand(batch, 2, k))  # [B, 2, K]
    wh = size.view(batch, 2, -1).gather(2, inds.unsqueeze(1).expand(batch, 2, k))
    xs, ys = xs + off[:, 0], ys + off[:, 1]
    return torch.stack(
        (xs - wh[:, 0] / 2, ys - wh[:, 1] / 2, xs + wh[:, 0] / 2, ys + wh[:, 1] / 2, score, classes), dim=-1
    )
