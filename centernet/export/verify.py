"""Run an exported detector file and compare its detections with the PyTorch model's."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from centernet.export.exporter import INPUT_NAME, OUTPUT_NAMES

BOX_TOLERANCE = 1e-3  # input pixels: exported and PyTorch boxes must agree this closely
SCORE_TIE_TOL = 1e-5  # scores this close may swap ranks between two runtimes (see compare_detections)

RunFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def load_exported(path: str | Path, fmt: str) -> RunFn:
    """A callable running an exported file on a float32 ``[B, 3, H, W]`` batch -> ``(boxes, scores, classes)``."""
    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # as many threads as PyTorch (runtime.threads)
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def run_onnx(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            boxes, scores, classes = session.run(list(OUTPUT_NAMES), {INPUT_NAME: images.astype(np.float32)})
            return boxes, scores, classes

        return run_onnx
    import torchvision  # noqa: F401 - registers torchvision::deform_conv2d for the loaded graph

    scripted = torch.jit.load(str(path), map_location="cpu")

    def run_torchscript(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with torch.no_grad():
            boxes, scores, classes = scripted(torch.from_numpy(images.astype(np.float32)))
        return boxes.numpy(), scores.numpy(), classes.numpy()

    return run_torchscript


def compare_detections(
    reference: Sequence[np.ndarray],
    exported: Sequence[np.ndarray],
    *,
    box_tol: float = BOX_TOLERANCE,
    score_tol: float = SCORE_TIE_TOL,
) -> dict[str, float | int | bool]:
    """Compare top-K outputs ``(boxes [B, K, 4], scores [B, K], classes [B, K])`` of two runs.

    Every reference row is matched to an unused exported row of the same class whose score is within
    ``score_tol``, the one with the closest box. Ties are the one legitimate difference: cells of equal
    score (e.g. the constant letterbox padding) may be ranked, and cut at K, differently by two runtimes.
    So a row that ties with another reference row of its class (or with the K-th score) may pair with a
    different box of the same score or drop out; it is counted in ``tie_swaps`` and not in
    ``max_box_diff``. Any other row must find its box.

    Returns:
        ``{"max_box_diff", "max_score_diff", "classes_equal", "matched", "tie_swaps", "rows"}``;
        ``classes_equal`` is False when a non-tied row has no same-class, same-score counterpart.
    """
    ref_boxes, ref_scores, ref_classes = (np.asarray(a) for a in reference)
    got_boxes, got_scores, got_classes = (np.asarray(a) for a in exported)
    if ref_boxes.shape != got_boxes.shape:
        raise ValueError(f"exported boxes have shape {got_boxes.shape}, PyTorch gives {ref_boxes.shape}")
    max_box = max_score = 0.0
    classes_equal, matched, tie_swaps = True, 0, 0
    for image in range(ref_boxes.shape[0]):
        scores, classes = ref_scores[image], ref_classes[image]
        kth = float(scores.min()) if scores.size else 0.0
        taken = np.zeros(scores.shape[0], dtype=bool)
        for rank in range(scores.shape[0]):
            same = (classes == classes[rank]) & (np.abs(scores - scores[rank]) <= score_tol)
            tied = int(same.sum()) > 1 or scores[rank] - kth <= score_tol
            candidates = np.flatnonzero(
                ~taken & (got_classes[image] == classes[rank]) & (np.abs(got_scores[image] - scores[rank]) <= score_tol)
            )
            if not candidates.size:
                tie_swaps += int(tied)
                classes_equal &= tied
                continue
            diffs = np.abs(got_boxes[image, candidates] - ref_boxes[image, rank]).max(axis=1)
            best = candidates[int(np.argmin(diffs))]
            taken[best] = True
            max_score = max(max_score, float(abs(got_scores[image, best] - scores[rank])))
            if diffs.min() > box_tol and tied:
                tie_swaps += 1
                continue
            matched += 1
            max_box = max(max_box, float(diffs.min()))
    return {"max_box_diff": max_box, "max_score_diff": max_score, "classes_equal": classes_equal,
            "matched": matched, "tie_swaps": tie_swaps, "rows": int(ref_scores.size)}
