"""Training targets as the ``target`` config section asks for them: CenterNet's, TTFNet's or a mix.

``target.heatmap`` picks the heatmap (``circular``: :func:`render_targets`; ``elliptical``:
:func:`render_ttf_targets`) and ``target.box`` the box targets (``center``: size, offset, index and mask
per object; ``gaussian_area``: dense ``box_target`` and ``box_weight`` maps). The default (circular,
center) returns exactly what :func:`render_targets` returns.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from centernet.config.schema import TargetConfig
from centernet.targets.centernet import render_targets
from centernet.targets.ttf import render_ttf_targets

CENTRE_BOX_KEYS = ("size", "offset", "index", "mask")
DENSE_BOX_KEYS = ("box_target", "box_weight")


def render_training_targets(
    boxes: Tensor,
    labels: Tensor,
    valid: Tensor,
    *,
    ignore: Tensor | None,
    target: TargetConfig,
    num_classes: int,
    output_size: Sequence[int],
    down_ratio: int,
) -> dict[str, Tensor]:
    """Render the targets of a padded batch as ``target`` configures them, on the boxes' device.

    Args:
        boxes: FloatTensor[B, M, 4] ``[x1, y1, x2, y2]`` in INPUT pixels (divided by ``down_ratio`` here
            for the CenterNet renderer).
        labels: LongTensor[B, M] class ids.
        valid: BoolTensor[B, M], False for padding slots.
        ignore: BoolTensor[B, M] or None; True marks ignore regions.
        target: the ``target`` config section.
        num_classes: heatmap channels C.
        output_size: ``(height, width)`` of the output grid.
        down_ratio: input pixels per output cell.

    Returns:
        ``heatmap [B, C, H, W]`` and ``heatmap_mask [B, 1, H, W]``, plus ``size``, ``offset``, ``index``,
        ``mask`` (``target.box=center``, see :func:`render_targets`) or ``box_target [B, 4, H, W]`` and
        ``box_weight [B, 1, H, W]`` (``target.box=gaussian_area``, see :func:`render_ttf_targets`).
    """
    centre = None
    if target.heatmap == "circular" or target.box == "center":
        centre = render_targets(
            boxes / down_ratio, labels, valid, ignore=ignore, num_classes=num_classes, output_size=output_size,
            radius_formula=target.radius, min_overlap=target.min_overlap,
        )
        if target.heatmap == "circular" and target.box == "center":
            return centre
    ttf = render_ttf_targets(
        boxes, labels, valid, ignore=ignore, num_classes=num_classes, output_size=output_size,
        down_ratio=down_ratio, alpha=target.alpha, beta=target.beta, box_weight=target.box_weight,
    )
    heat_source = ttf if target.heatmap == "elliptical" else centre
    box_source, box_keys = (ttf, DENSE_BOX_KEYS) if target.box == "gaussian_area" else (centre, CENTRE_BOX_KEYS)
    assert heat_source is not None and box_source is not None  # centre is rendered whenever it is a source
    return {
        "heatmap": heat_source["heatmap"],
        "heatmap_mask": heat_source["heatmap_mask"],
        **{key: box_source[key] for key in box_keys},
    }
