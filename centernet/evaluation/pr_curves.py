"""Per-class precision/recall curves from COCOeval's accumulated precision array, and their plot.

``COCOeval.accumulate()`` stores ``eval["precision"]`` as ``[T, R, K, A, M]``: IoU thresholds
(0.50:0.05:0.95), 101 recall thresholds (0:0.01:1), categories, area ranges and max-detection limits.
Each entry is the *interpolated* precision (the running maximum from the right, as COCO AP uses it) at
that recall, 0 beyond the highest recall reached, and -1 for a category without ground truth. The AP of
one class at one IoU is the mean of its curve, so the curves explain the numbers of ``metrics.json``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PR_CURVE_IOUS = (0.5, 0.75)
"""IoU thresholds whose curves are extracted and drawn."""
PR_AREA = "all"
UNDEFINED = -1.0  # COCOeval's marker for "no ground truth"
IOU_MATCH_TOL = 1e-9  # COCOeval's thresholds come from linspace; compare with a tolerance
PANEL_INCHES = 3.2
PLOT_DPI = 110
PERCENT = 100.0
PR_CURVES_FILENAME = "pr_curves.png"


@dataclass(frozen=True)
class PRCurves:
    """Interpolated precision at fixed recall points, per IoU threshold and class.

    Attributes:
        iou_thresholds: ``T'`` IoU thresholds (e.g. 0.5, 0.75).
        recall: float ``[R]`` recall points (COCO: 0, 0.01, ..., 1).
        precision: float ``[T', R, K]`` interpolated precision; NaN for a class without ground truth.
        class_names: ``K`` class names, in the order of the last axis.
    """

    iou_thresholds: tuple[float, ...]
    recall: np.ndarray
    precision: np.ndarray
    class_names: tuple[str, ...]

    def average_precision(self) -> np.ndarray:
        """float ``[T', K]`` AP per IoU threshold and class (mean over recall points; NaN without GT)."""
        return self.precision.mean(axis=1)


def extract_pr_curves(
    evaluator: Any, class_names: Sequence[str], iou_thresholds: Sequence[float] = PR_CURVE_IOUS
) -> PRCurves:
    """Take the per-class curves out of an accumulated COCOeval (area ``all``, the largest ``maxDets``).

    Args:
        evaluator: a pycocotools or faster-coco-eval ``COCOeval`` after ``accumulate()``.
        class_names: one name per ``evaluator.params.catIds`` entry, in that order.
        iou_thresholds: thresholds to keep; each must be one of ``params.iouThrs``.

    Returns:
        The :class:`PRCurves`.

    Raises:
        ValueError: a threshold is not evaluated, or the class names do not match the categories.
    """
    params = evaluator.params
    if len(class_names) != len(params.catIds):
        raise ValueError(f"{len(class_names)} class names for {len(params.catIds)} evaluated categories")
    precision = np.asarray(evaluator.eval["precision"], dtype=np.float64)  # [T, R, K, A, M]
    evaluated = np.asarray(params.iouThrs, dtype=np.float64)
    rows = []
    for iou in iou_thresholds:
        matches = np.flatnonzero(np.abs(evaluated - iou) < IOU_MATCH_TOL)
        if matches.size == 0:
            raise ValueError(f"IoU threshold {iou} was not evaluated (evaluated: {evaluated.round(2).tolist()})")
        rows.append(int(matches[0]))
    area = list(params.areaRngLbl).index(PR_AREA)
    max_dets = len(params.maxDets) - 1  # the largest (COCO's 100, or eval.max_dets)
    selected = precision[rows][:, :, :, area, max_dets]  # [T', R, K]
    selected = np.where(selected <= UNDEFINED, np.nan, selected)
    return PRCurves(
        iou_thresholds=tuple(float(iou) for iou in iou_thresholds),
        recall=np.asarray(params.recThrs, dtype=np.float64),
        precision=selected,
        class_names=tuple(str(name) for name in class_names),
    )


def plot_pr_curves(curves: PRCurves, path: str | Path) -> None:
    """Draw one panel per class with a precision/recall line per IoU threshold (AP in the legend).

    Args:
        curves: the curves to draw.
        path: the image file to write (PNG); its folder must exist.
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend, renders with Agg

    num_classes = max(len(curves.class_names), 1)
    cols = math.ceil(math.sqrt(num_classes))
    rows = math.ceil(num_classes / cols)
    figure = Figure(figsize=(PANEL_INCHES * cols, PANEL_INCHES * rows))
    axes = np.atleast_1d(figure.subplots(rows, cols, squeeze=False)).ravel()
    ap = curves.average_precision()  # [T', K]
    for k, name in enumerate(curves.class_names):
        axis = axes[k]
        for t, iou in enumerate(curves.iou_thresholds):
            if np.isnan(ap[t, k]):
                continue
            label = f"IoU {iou:.2f}: AP {PERCENT * ap[t, k]:.1f}"
            axis.plot(curves.recall, curves.precision[t, :, k], color=f"C{t}", label=label)
        axis.set_title(name if not np.isnan(ap[:, k]).all() else f"{name} (no ground truth)")
        axis.set_xlim(0.0, 1.0)
        axis.set_ylim(0.0, 1.02)
        axis.set_xlabel("recall")
        axis.set_ylabel("precision")
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(loc="lower left", fontsize="small")
    for axis in axes[len(curves.class_names) :]:
        axis.set_visible(False)
    figure.tight_layout()
    figure.savefig(str(path), dpi=PLOT_DPI)
