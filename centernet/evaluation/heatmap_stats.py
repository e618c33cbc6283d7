"""How a trained heatmap separates objects from background: map quantiles and the peak height at objects.

A detector ranks its detections by heatmap peak, so what matters is the contrast between the peaks at the
objects and the rest of the map, not the absolute probabilities. These statistics make the contrast
visible (docs/loss_study.md uses them to explain why the heatmap losses differ in AP):

- the quantiles of every cell of every class map of every image;
- per object (ignore regions left out), its *peak*: the highest probability of its class map in the
  3 x 3 cells around the cell holding its box centre;
- the share of objects whose peak is above the 99% quantile of its own class map in its image.

The cells are counted in a histogram of :data:`RESOLUTION_BINS` equal bins of [0, 1] (memory does not grow
with the data set), so the map quantiles are exact to ``1 / RESOLUTION_BINS``; the per-image contrast
quantile is computed exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QUANTILES = (0.5, 0.9, 0.99)
CONTRAST_QUANTILE = 0.99
PEAK_RADIUS = 1  # cells on each side of the centre cell: a 3 x 3 window
RESOLUTION_BINS = 10_000
PLOT_BINS = 50
MISSING = "–"


@dataclass(frozen=True)
class HeatmapSummary:
    """Statistics over a set of images (see the module docstring).

    Attributes:
        quantiles: ``{q: x}`` for each of :data:`QUANTILES`: the smallest ``x`` (to ``1 / RESOLUTION_BINS``)
            with at least a share ``q`` of all cells ``<= x``.
        peak_median: median peak over the objects (``None`` without objects).
        peaks_above: share of objects whose peak is above the 99% quantile of their class map
            (``None`` without objects).
        histogram: cell counts in :data:`PLOT_BINS` equal bins of [0, 1].
        objects: number of objects.
        cells: number of map cells.
    """

    quantiles: dict[float, float]
    peak_median: float | None
    peaks_above: float | None
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
        self._counts = np.zeros(RESOLUTION_BINS, dtype=np.int64)
        self._peaks: list[np.ndarray] = []
        self._above: list[np.ndarray] = []

    def add(self, heatmap: np.ndarray, centres: np.ndarray, labels: np.ndarray) -> None:
        """Add one image: its ``[C, h, w]`` map and its objects (see :func:`object_peaks`)."""
        counts, _ = np.histogram(np.clip(heatmap, 0.0, 1.0), bins=RESOLUTION_BINS, range=(0.0, 1.0))
        self._counts += counts
        peaks = object_peaks(heatmap, centres, labels)
        contrast = np.quantile(heatmap.reshape(len(heatmap), -1), CONTRAST_QUANTILE, axis=1)  # per class
        self._peaks.append(peaks)
        self._above.append(peaks > contrast[labels])

    def summary(self) -> HeatmapSummary:
        """The statistics of every image added so far.

        Raises:
            ValueError: no image was added.
        """
        cells = int(self._counts.sum())
        if cells == 0:
            raise ValueError("HeatmapStatistics.summary: no image was added")
        cumulative = np.cumsum(self._counts)
        upper_edges = np.arange(1, RESOLUTION_BINS + 1) / RESOLUTION_BINS
        quantiles = {q: float(upper_edges[np.searchsorted(cumulative, q * cells)]) for q in QUANTILES}
        peaks = np.concatenate(self._peaks)
        above = np.concatenate(self._above)
        return HeatmapSummary(
            quantiles=quantiles,
            peak_median=float(np.median(peaks)) if len(peaks) else None,
            peaks_above=float(above.mean()) if len(above) else None,
            histogram=self._counts.reshape(PLOT_BINS, -1).sum(axis=1),
            objects=len(peaks),
            cells=cells,
        )


def markdown_row(name: str, summary: HeatmapSummary) -> str:
    """One row of the table whose header is :data:`MARKDOWN_HEADER` (``–`` where there is no object)."""
    quantiles = " | ".join(f"{summary.quantiles[q]:.3f}" for q in QUANTILES)
    peak = MISSING if summary.peak_median is None else f"{summary.peak_median:.3f}"
    above = MISSING if summary.peaks_above is None else f"{100 * summary.peaks_above:.0f}%"
    return f"| {name} | {quantiles} | {peak} | {above} | {summary.objects} |"


MARKDOWN_HEADER = (
    "| checkpoint | " + " | ".join(f"p {q:.0%}" for q in QUANTILES)
    + f" | peak at objects (median) | objects above their class map's p {CONTRAST_QUANTILE:.0%} | objects |\n"
    + "|---|" + "---:|" * (len(QUANTILES) + 3)
)
