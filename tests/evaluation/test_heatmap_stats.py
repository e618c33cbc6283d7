"""centernet.evaluation.heatmap_stats: object peaks and the summary against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from centernet.evaluation.heatmap_stats import HeatmapStatistics, object_peaks


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
    # sorted cells: 37 zeros, 8 x 0.2, 0.5, 0.7, 0.9 (indices 0..47); linear interpolation at q * 47
    assert summary.quantiles[0.5] == 0.0  # index 23.5
    assert summary.quantiles[0.9] == pytest.approx(0.2)  # index 42.3, both neighbours 0.2
    assert summary.quantiles[0.99] == pytest.approx(0.7 + 0.53 * 0.2)  # index 46.53
    assert summary.peak_median == pytest.approx(0.2)  # peaks 0.9, 0.5, 0, 0, 0.2
    # image 1: its p99 is at index 0.99 * 39 = 38.61 of its 40 cells, 0.7 + 0.61 * 0.2 = 0.822: only 0.9 is
    # above; image 2: the peak equals its constant map, not above it
    assert summary.peaks_above == pytest.approx(1 / 5)
    assert summary.histogram.sum() == 48 and summary.histogram[0] == 37 and summary.histogram[10] == 8


def test_summary_without_images_is_an_error() -> None:
    with pytest.raises(ValueError, match="no image was added"):
        HeatmapStatistics().summary()
