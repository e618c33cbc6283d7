"""Detections of one image in structured form (boxes, scores, labels), as ``Detector`` returns them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from centernet.decode import BOX_COORDS, CLASS_COLUMN, NUM_DET_COLUMNS, SCORE_COLUMN


@dataclass
class Detections:
    """Detections of one image, best first.

    Attributes:
        boxes: float32 ``[K, 4]`` ``[x1, y1, x2, y2]`` in image pixels (not clipped to the image).
        scores: float32 ``[K]`` heatmap peak probabilities, non-increasing.
        labels: int64 ``[K]`` class indices ``0..C-1`` into ``class_names``.
        class_names: the ``C`` class names of the model.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        """Number of detections ``K``."""
        return int(self.scores.shape[0])

    def above(self, score_thr: float) -> Detections:
        """The detections whose score is ``>= score_thr`` (order kept)."""
        keep = self.scores >= score_thr
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep], self.class_names)

    def rows(self) -> np.ndarray:
        """float32 ``[K, 6]`` rows ``[x1, y1, x2, y2, score, class]`` (the inverse of :meth:`from_rows`)."""
        return np.concatenate(
            [self.boxes, self.scores[:, None], self.labels[:, None].astype(np.float32)], axis=1
        ).astype(np.float32)

    @classmethod
    def from_rows(cls, rows: np.ndarray, class_names: Sequence[str]) -> Detections:
        """Build from ``[K, 6]`` rows ``[x1, y1, x2, y2, score, class]`` (as :func:`detections_to_image` returns)."""
        rows = np.asarray(rows, dtype=np.float32).reshape(-1, NUM_DET_COLUMNS)
        return cls(
            boxes=np.ascontiguousarray(rows[:, :BOX_COORDS]),
            scores=np.ascontiguousarray(rows[:, SCORE_COLUMN]),
            labels=rows[:, CLASS_COLUMN].round().astype(np.int64),
            class_names=tuple(class_names),
        )
