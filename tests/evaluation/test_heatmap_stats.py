"""centernet.evaluation.heatmap_stats: object peaks and the summary against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from centernet.evaluation.heatmap_stats import HeatmapStatistics, markdown_row, object_peaks


def two_class_map() -> np.ndarray:
    heatmap = np.zeros((2, 4, 5))
    heatmap[0, 1, 1] = 0.9
    heatmap[0, 3, 4] = 0.5
    heatmap[1, 0, 0] = 0.7
    return heatmap


# (x, y) centres in cells: (1.5, 1.5) -> cell row 1 col 1; (4.9, 3.2) -> row 3 col 4 (window clipped at the
# corner); (0.2, 2.9) -> row 2 col 0 of class 1, whose 0.7 at row 0 is outside the 3 x 3 window;
# (-3, 10) is off the map and clipped to row 3 col 0.
CENTRES = np.array([[1.5, 1.5], [4.9, 3.2], [0.2, 2.9], [-3.0, 10.0]])
LABELS = np.array([0, 0, 1, 1])


def test_object_peaks_are_the_3x3_maxima_of_the_object_class() -> None:
    assert object_peaks(two_class_map(), CENTRES, LABELS).tolist() == [0.9, 0.5, 0.0, 0.0]


def test_summary_over_two_images_by_hand() -> None:
    stats = HeatmapStatistics()
    stats.add(two_class_map(), CENTRES, LABELS)
    stats.add(np.full((2, 2, 2), 0.2), np.array([[0.5, 0.5]]), np.array([1]))
    summary = stats.summary()
    assert summary.cells == 48 and summary.objects == 5
    # sorted cells: 37 zeros, 8 x 0.2, 0.5, 0.7, 0.9; the q quantile is the smallest value with at least
    # q * 48 cells at or below it (to 1e-4): 24 cells -> 0, 43.2 -> the 44th cell 0.2, 47.52 -> the 48th 0.9
    assert summary.quantiles[0.5] == pytest.approx(0.0, abs=1e-4)
    assert summary.quantiles[0.9] == pytest.approx(0.2, abs=1e-4)
    assert summary.quantiles[0.99] == pytest.approx(0.9, abs=1e-4)
    assert summary.peak_median == pytest.approx(0.2)  # peaks 0.9, 0.5, 0, 0, 0.2
    # p99 per class map of image 1 (20 cells each, numpy's linear interpolation at index 18.81): class 0
    # 0.5 + 0.81 * 0.4 = 0.824, only the 0.9 peak is above; class 1 0.81 * 0.7 = 0.567, its peaks are 0.
    # Image 2: the peak equals its constant map, not above it.
    assert summary.peaks_above == pytest.approx(1 / 5)
    assert summary.histogram.sum() == 48 and summary.histogram[0] == 37 and summary.histogram[10] == 8
    assert markdown_row("run", summary) == "| run | 0.000 | 0.200 | 0.900 | 0.200 | 20% | 5 |"


def test_images_without_objects_leave_the_object_columns_empty() -> None:
    stats = HeatmapStatistics()
    stats.add(np.full((1, 3, 3), 0.5), np.zeros((0, 2)), np.zeros(0, dtype=int))
    summary = stats.summary()
    assert summary.objects == 0 and summary.peak_median is None and summary.peaks_above is None
    assert markdown_row("empty", summary) == "| empty | 0.500 | 0.500 | 0.500 | – | – | 0 |"


def test_summary_without_images_is_an_error() -> None:
    with pytest.raises(ValueError, match="no image was added"):
        HeatmapStatistics().summary()
