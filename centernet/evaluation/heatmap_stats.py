"""How a trained heatmap separates objects from background: map quantiles and the peak height at objects.

A detector ranks its detections by heatmap peak, so what matters is the contrast between the peaks at the
objects and the rest of the map, not the absolute probabilities. These statistics make the contrast
visible (docs/loss_study.md uses them to explain why losses that reach the same training loss differ in AP):

- the quantiles of every cell of every class map of every image;
- per object (ignore regions left out), its *peak*: the highest probability of its class map in the
  3 x 3 cells around the cell holding its box centre;
- the share of objects whose peak is above the 99% quantile of its own image's maps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QUANTILES = (0.5, 0.9, 0.99)
CONTRAST_QUANTILE = 0.99
PEAK_RADIUS = 1  # cells on each side of the centre cell: a 3 x 3 window


@dataclass(frozen=True)
class HeatmapSummary:
    """Statistics over a set of images (see the module docstring).

    Attributes:
        quantiles: ``{q: value}`` for each of :data:`QUANTILES`, over all cells of all maps.
        peak_median: median peak over the objects (``nan`` without objects).
        peaks_above: share of objects whose peak is above their image's 99% quantile (``nan`` without objects).
        histogram: cell counts in 50 equal bins of [0, 1].
        objects: number of objects.
        cells: number of map cells.
    """

    quantiles: dict[float, float]
    peak_median: float
    peaks_above: float
    histogram: np.ndarray
    objects: int
    cells: int


def object_peaks(heatmap: np.ndarray, centres: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The peak of each object: max of its class map over the 3 x 3 cells around its centre cell.

    Args:
        heatmap: float ``[C, h, w]`` probabilities.
        centres: float ``[N, 2]`` object centres ``(x, y)`` in map cells (cell ``(i, j)`` spans
            ``[j, j + 1) x [i, i + 1)``); centres off the map are clipped onto its border cells.
        labels: int ``[N]`` class of each object, in ``[0, C)``.

    Returns:
        float ``[N]``.
    """
    _, height, width = heatmap.shape
    cols = np.clip(np.floor(centres[:, 0]).astype(int), 0, width - 1)
    rows = np.clip(np.floor(centres[:, 1]).astype(int), 0, height - 1)
    peaks = np.empty(len(labels), dtype=np.float64)
    for n, (label, row, col) in enumerate(zip(labels, rows, cols, strict=True)):
        window = heatmap[label, max(row - PEAK_RADIUS, 0):row + PEAK_RADIUS + 1,
                         max(col - PEAK_RADIUS, 0):col + PEAK_RADIUS + 1]
        peaks[n] = window.max()
    return peaks


class HeatmapStatistics:
    """Accumulates images with :meth:`add`; :meth:`summary` gives the :class:`HeatmapSummary`."""

    def __init__(self) -> None:
        self._cells: list[np.ndarray] = []
        self._peaks: list[np.ndarray] = []
        self._above: list[np.ndarray] = []

    def add(self, heatmap: np.ndarray, centres: np.ndarray, labels: np.ndarray) -> None:
        """Add one image: its ``[C, h, w]`` map and its objects (see :func:`object_peaks`)."""
        peaks = object_peaks(heatmap, centres, labels)
        self._cells.append(heatmap.ravel().astype(np.float64))
        self._peaks.append(peaks)
        self._above.append(peaks > np.quantile(heatmap, CONTRAST_QUANTILE))

    def summary(self) -> HeatmapSummary:
        """The statistics of every image added so far.

        Raises:
            ValueError: no image was added.
        """
        if not self._cells:
            raise ValueError("HeatmapStatistics.summary: no image was added")
        cells = np.concatenate(self._cells)
        peaks = np.concatenate(self._peaks)
        above = np.concatenate(self._above)
        histogram, _ = np.histogram(np.clip(cells, 0.0, 1.0), bins=50, range=(0.0, 1.0))
        return HeatmapSummary(
            quantiles={q: float(np.quantile(cells, q)) for q in QUANTILES},
            peak_median=float(np.median(peaks)) if len(peaks) else float("nan"),
            peaks_above=float(above.mean()) if len(above) else float("nan"),
            histogram=histogram,
            objects=len(peaks),
            cells=len(cells),
        )


def markdown_row(name: str, summary: HeatmapSummary) -> str:
    """One row of the table whose header is :data:`MARKDOWN_HEADER`."""
    quantiles = " | ".join(f"{summary.quantiles[q]:.3f}" for q in QUANTILES)
    return (f"| {name} | {quantiles} | {summary.peak_median:.3f} | {100 * summary.peaks_above:.0f}% "
            f"| {summary.objects} |")


MARKDOWN_HEADER = (
    "| checkpoint | " + " | ".join(f"p {q:.0%}" for q in QUANTILES)
    + " | peak at objects (median) | objects above their image's p 99% | objects |\n"
    + "|---|" + "---:|" * (len(QUANTILES) + 3)
)
