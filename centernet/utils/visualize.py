"""Drawing detections and heatmap overlays on BGR images (cv2, always on a copy)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from centernet.decode import BOX_COORDS

#: Hue step between consecutive classes, as a fraction of the colour wheel (golden-ratio spacing
#: keeps neighbouring class ids far apart in hue for any number of classes).
GOLDEN_RATIO_CONJUGATE = 0.618033988749895
#: OpenCV's 8-bit hue range is 0..179.
_CV2_HUE_RANGE = 180
_FULL = 255
#: Saturation / value of the class colours (strong but not neon).
CLASS_SATURATION = 220
CLASS_VALUE = 230
#: Label text scale per pixel of the shorter image side, and its bounds.
FONT_SCALE_PER_PIXEL = 1.0 / 900.0
MIN_FONT_SCALE = 0.3
MAX_FONT_SCALE = 1.0
#: Box line thickness per pixel of the shorter image side (at least 1).
THICKNESS_PER_PIXEL = 1.0 / 400.0
#: Padding around the label text, in pixels.
LABEL_PADDING = 2
DEFAULT_SCORE_THR = 0.3
DEFAULT_ALPHA = 0.5
_TEXT_COLOUR = (255, 255, 255)


def class_colour(label: int) -> tuple[int, int, int]:
    """A BGR colour for class ``label``: the same class always gets the same colour, classes differ in hue."""
    hue = int((label * GOLDEN_RATIO_CONJUGATE) % 1.0 * _CV2_HUE_RANGE)
    hsv = np.array([[[hue, CLASS_SATURATION, CLASS_VALUE]]], dtype=np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def _check_bgr(image_bgr: np.ndarray, caller: str) -> None:
    if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"{caller}: image must be uint8 [H, W, 3], got {getattr(image_bgr, 'shape', image_bgr)}")
    if image_bgr.dtype != np.uint8:
        raise ValueError(f"{caller}: image must be uint8, got dtype {image_bgr.dtype}")



def _text_and_line_size(canvas: np.ndarray) -> tuple[float, int]:
    """Font scale and line thickness for labels on ``canvas`` (uint8 ``[H, W, 3]``), growing with its short side."""
    side = min(canvas.shape[:2])
    font_scale = float(np.clip(side * FONT_SCALE_PER_PIXEL, MIN_FONT_SCALE, MAX_FONT_SCALE))
    return font_scale, max(1, round(side * THICKNESS_PER_PIXEL))

def draw_detections(
    image_bgr: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    score_thr: float = DEFAULT_SCORE_THR,
) -> np.ndarray:
    """Draw boxes with ``"<class> <score>"`` labels, one colour per class.

    Args:
        image_bgr: uint8 ``[H, W, 3]`` BGR image (left unchanged).
        boxes: float ``[K, 4]`` ``[x1, y1, x2, y2]`` in image pixels.
        scores: float ``[K]``.
        labels: int ``[K]`` class indices into ``class_names``.
        class_names: the class names.
        score_thr: detections scoring below this are not drawn.

    Returns:
        uint8 ``[H, W, 3]`` annotated copy of ``image_bgr``.

    Raises:
        ValueError: bad image, mismatched lengths, or a label outside ``class_names``.
    """
    _check_bgr(image_bgr, "draw_detections")
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, BOX_COORDS)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if not len(boxes) == len(scores) == len(labels):
        raise ValueError(
            f"draw_detections: boxes, scores and labels differ in length ({len(boxes)}, {len(scores)}, {len(labels)})"
        )
    canvas = image_bgr.copy()
    font_scale, thickness = _text_and_line_size(canvas)
    # Lowest score first so that the best boxes end up on top.
    for index in np.argsort(scores, kind="stable"):
        score, label = float(scores[index]), int(labels[index])
        if score < score_thr:
            continue
        if not 0 <= label < len(class_names):
            raise ValueError(
                f"draw_detections: detection {index} has label {label}, expected 0..{len(class_names) - 1}"
            )
        colour = class_colour(label)
        x1, y1, x2, y2 = (round(float(v)) for v in boxes[index])
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        _draw_label(canvas, f"{class_names[label]} {score:.2f}", (x1, y1), colour, font_scale)
    return canvas


def _draw_label(
    canvas: np.ndarray, text: str, corner: tuple[int, int], colour: tuple[int, int, int], font_scale: float
) -> None:
    """Write ``text`` on a filled ``colour`` patch above the box corner (below it at the image top)."""
    (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    patch_h = text_h + baseline + 2 * LABEL_PADDING
    x = min(max(corner[0], 0), max(canvas.shape[1] - text_w - 2 * LABEL_PADDING, 0))
    top = corner[1] - patch_h if corner[1] - patch_h >= 0 else max(corner[1], 0)
    cv2.rectangle(canvas, (x, top), (x + text_w + 2 * LABEL_PADDING, top + patch_h), colour, cv2.FILLED)
    origin = (x + LABEL_PADDING, top + LABEL_PADDING + text_h)
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, font_scale, _TEXT_COLOUR, 1, cv2.LINE_AA)


def overlay_heatmap(
    image_bgr: np.ndarray,
    heatmap: np.ndarray,
    *,
    alpha: float = DEFAULT_ALPHA,
    colormap: int = cv2.COLORMAP_JET,
) -> np.ndarray:
    """Blend a colour-mapped heatmap over the image.

    Args:
        image_bgr: uint8 ``[H, W, 3]`` BGR image (left unchanged).
        heatmap: float ``[C, h, w]`` or ``[h, w]`` probabilities in ``[0, 1]`` covering the whole
            image (as :meth:`Detector.heatmap` returns); the maximum over classes is shown, resized
            to ``H x W``. Values outside ``[0, 1]`` are clipped.
        alpha: weight of the heatmap colours in the blend, in ``[0, 1]``.
        colormap: an OpenCV colour map (``cv2.COLORMAP_*``).

    Returns:
        uint8 ``[H, W, 3]`` ``(1 - alpha) * image + alpha * colours``.
    """
    _check_bgr(image_bgr, "overlay_heatmap")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay_heatmap: alpha must be in [0, 1], got {alpha}")
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim == 3:
        heat = heat.max(axis=0) if heat.shape[0] > 0 else np.zeros(heat.shape[1:], dtype=np.float32)
    if heat.ndim != 2 or heat.size == 0:
        raise ValueError(f"overlay_heatmap: heatmap must be [C, h, w] or [h, w] and non-empty, got {heatmap.shape}")
    height, width = image_bgr.shape[:2]
    resized = cv2.resize(np.clip(heat, 0.0, 1.0).astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    colours = cv2.applyColorMap(np.round(resized * _FULL).astype(np.uint8), colormap)
    return cv2.addWeighted(image_bgr, 1.0 - alpha, colours, alpha, 0.0)


#: Colours (BGR) of the ground-truth / predicted boxes in :func:`draw_predictions_and_ground_truth`:
#: green and magenta stay distinct on foliage, soil and for colour-blind readers (no red/green pair).
GROUND_TRUTH_COLOUR = (80, 220, 80)
PREDICTION_COLOUR = (230, 40, 230)
LEGEND_BACKGROUND = (0, 0, 0)
LEGEND_SWATCH_PX = 12
_TEXT_LINE_GAP = 4


def _draw_boxes(canvas: np.ndarray, boxes: np.ndarray, colour: tuple[int, int, int], thickness: int) -> None:
    for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float32).reshape(-1, BOX_COORDS).tolist():
        cv2.rectangle(canvas, (round(x1), round(y1)), (round(x2), round(y2)), colour, thickness)


def draw_legend(canvas: np.ndarray, entries: Sequence[tuple[str, tuple[int, int, int]]], font_scale: float) -> None:
    """Draw a legend (colour swatch + text per entry) in the top-left corner of ``canvas``, in place."""
    sizes = [cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1) for text, _ in entries]
    line_h = max([LEGEND_SWATCH_PX, *(h + base for (_, h), base in sizes)]) + _TEXT_LINE_GAP
    width = LEGEND_SWATCH_PX + 3 * LABEL_PADDING + max((w for (w, _), _ in sizes), default=0) + LABEL_PADDING
    height = line_h * len(entries) + LABEL_PADDING
    cv2.rectangle(canvas, (0, 0), (width, height), LEGEND_BACKGROUND, cv2.FILLED)
    for row, ((text, colour), ((_, text_h), _)) in enumerate(zip(entries, sizes, strict=True)):
        top = LABEL_PADDING + row * line_h
        cv2.rectangle(canvas, (LABEL_PADDING, top), (LABEL_PADDING + LEGEND_SWATCH_PX, top + LEGEND_SWATCH_PX),
                      colour, cv2.FILLED)
        origin = (2 * LABEL_PADDING + LEGEND_SWATCH_PX + LABEL_PADDING, top + text_h)
        cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, font_scale, _TEXT_COLOUR, 1, cv2.LINE_AA)


def draw_predictions_and_ground_truth(
    image_bgr: np.ndarray,
    gt_boxes: np.ndarray,
    pred_boxes: np.ndarray,
    pred_scores: np.ndarray,
    *,
    score_thr: float = DEFAULT_SCORE_THR,
) -> np.ndarray:
    """Ground-truth and predicted boxes in two colours, with a legend that counts both.

    Args:
        image_bgr: uint8 ``[H, W, 3]`` BGR image (left unchanged).
        gt_boxes: float ``[N, 4]`` ground-truth ``[x1, y1, x2, y2]`` in image pixels.
        pred_boxes: float ``[K, 4]`` predicted ``[x1, y1, x2, y2]`` in image pixels.
        pred_scores: float ``[K]``; predictions scoring below ``score_thr`` are not drawn.
        score_thr: the drawing threshold (shown in the legend).

    Returns:
        uint8 ``[H, W, 3]`` annotated copy: ground truth in :data:`GROUND_TRUTH_COLOUR`, predictions
        (drawn thinner, on top) in :data:`PREDICTION_COLOUR`.
    """
    _check_bgr(image_bgr, "draw_predictions_and_ground_truth")
    gt = np.asarray(gt_boxes, dtype=np.float32).reshape(-1, BOX_COORDS)
    pred = np.asarray(pred_boxes, dtype=np.float32).reshape(-1, BOX_COORDS)
    scores = np.asarray(pred_scores, dtype=np.float32).reshape(-1)
    if len(pred) != len(scores):
        raise ValueError(f"draw_predictions_and_ground_truth: {len(pred)} boxes but {len(scores)} scores")
    shown = pred[scores >= score_thr]
    canvas = image_bgr.copy()
    font_scale, thickness = _text_and_line_size(canvas)
    _draw_boxes(canvas, gt, GROUND_TRUTH_COLOUR, thickness + 1)
    _draw_boxes(canvas, shown, PREDICTION_COLOUR, thickness)
    legend = [
        (f"ground truth ({len(gt)})", GROUND_TRUTH_COLOUR),
        (f"prediction, score >= {score_thr:g} ({len(shown)})", PREDICTION_COLOUR),
    ]
    draw_legend(canvas, legend, font_scale)
    return canvas


def tile_images(images: Sequence[np.ndarray], *, gap: int = 8) -> np.ndarray:
    """Place uint8 ``[H_i, W_i, 3]`` images side by side (top-aligned, white gaps and padding).

    Returns:
        uint8 ``[max H_i, sum W_i + gap * (n - 1), 3]``.

    Raises:
        ValueError: no images.
    """
    if not images:
        raise ValueError("tile_images: no images to tile")
    height = max(image.shape[0] for image in images)
    width = sum(image.shape[1] for image in images) + gap * (len(images) - 1)
    canvas = np.full((height, width, 3), _FULL, dtype=np.uint8)
    x = 0
    for image in images:
        canvas[: image.shape[0], x : x + image.shape[1]] = image
        x += image.shape[1] + gap
    return canvas


#: Colour (BGR) of ignore regions (COCO iscrowd, VOC difficult) in :func:`draw_ground_truth`.
IGNORE_COLOUR = (160, 160, 160)


def draw_ground_truth(
    image_bgr: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    ignore: np.ndarray | None = None,
) -> np.ndarray:
    """Draw ground-truth boxes in their class colours with the class name; ignore regions in grey.

    Args:
        image_bgr: uint8 ``[H, W, 3]`` BGR image (left unchanged).
        boxes: float ``[N, 4]`` ``[x1, y1, x2, y2]`` in image pixels.
        labels: int ``[N]`` class indices into ``class_names``.
        class_names: the class names.
        ignore: bool ``[N]``; True marks ignore regions (labelled ``"<class> (ignore)"``).

    Returns:
        uint8 ``[H, W, 3]`` annotated copy of ``image_bgr``.
    """
    _check_bgr(image_bgr, "draw_ground_truth")
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, BOX_COORDS)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    flags = np.zeros(len(boxes), dtype=bool) if ignore is None else np.asarray(ignore, dtype=bool).reshape(-1)
    if not len(boxes) == len(labels) == len(flags):
        raise ValueError(
            f"draw_ground_truth: boxes, labels and ignore differ in length ({len(boxes)}, {len(labels)}, {len(flags)})"
        )
    canvas = image_bgr.copy()
    font_scale, thickness = _text_and_line_size(canvas)
    for index, (box, label, is_ignore) in enumerate(zip(boxes, labels.tolist(), flags.tolist(), strict=True)):
        if not 0 <= label < len(class_names):
            raise ValueError(f"draw_ground_truth: box {index} has label {label}, expected 0..{len(class_names) - 1}")
        colour = IGNORE_COLOUR if is_ignore else class_colour(label)
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        text = f"{class_names[label]} (ignore)" if is_ignore else class_names[label]
        _draw_label(canvas, text, (x1, y1), colour, font_scale)
    return canvas
