"""Export a trained CenterNet with its decoder to ONNX or TorchScript, and verify the exported file.

The exported graph takes a normalised float image batch ``[B, 3, H, W]`` (dynamic ``B``, the ``H, W``
of the export) and returns the top-K detections of every image on the input grid:
``boxes [B, K, 4]`` float32 ``x1, y1, x2, y2`` in input pixels, ``scores [B, K]`` float32 and
``classes [B, K]`` int64, best first. Pre-processing (the letterbox warp and normalisation) and the
mapping back to image pixels stay outside the graph: they depend on each image's size.

:class:`GraphDecoder` is :func:`centernet.decode.decode_detections` written for graph export: static
K, ``max_pool2d`` peak keep and no Python control flow on tensor shapes (the library decoder chunks
over planes on CPU, which a trace would freeze to the export batch size). The tests check that both
give the same detections. Deformable convolutions export through ``torchvision.ops.deform_conv2d``'s
ONNX ``DeformConv`` (opset 19; onnxruntime implements it) or, for runtimes without it,
:func:`exportable_deform_convs` swaps them for an equivalent bilinear-sampling formulation
(``grid_sample`` + matmul).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from centernet.decode import PEAK_KERNEL
from centernet.models.dcn import DeformConv
from centernet.models.registry import Registry

logger = logging.getLogger(__name__)

ONNX_OPSET = 19
MAX_EXPORT_BATCH = 1024  # upper bound of the dynamic batch dimension
BOX_TOLERANCE = 1e-3  # input pixels: exported and PyTorch boxes must agree this closely
SCORE_TIE_TOL = 1e-5  # scores this close may swap ranks between two runtimes (see compare_detections)
INPUT_NAME = "images"
OUTPUT_NAMES = ("boxes", "scores", "classes")


class GraphDecoder(nn.Module):
    """Top-``k`` decoding inside an exported graph (same results as :func:`decode_detections`).

    Args:
        k: detections per image (clamped to ``C * H * W`` for the export's map size).
        output_stride: input pixels per output cell; boxes are multiplied by it (input grid).
    """

    def __init__(self, k: int, output_stride: int) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"GraphDecoder: k must be >= 1, got {k}")
        self.k = int(k)
        self.output_stride = float(output_stride)

    def forward(self, heatmap: Tensor, size: Tensor, offset: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Args: ``heatmap [B, C, H, W]`` logits, ``size``/``offset`` ``[B, 2, H, W]``.

        Returns:
            ``boxes [B, K, 4]`` xyxy on the input grid, ``scores [B, K]``, ``classes [B, K]`` int64.
        """
        _, num_classes, height, width = heatmap.shape
        heat = heatmap.float().sigmoid()
        pooled = F.max_pool2d(heat, PEAK_KERNEL, stride=1, padding=(PEAK_KERNEL - 1) // 2)
        heat = heat * (pooled == heat).to(heat.dtype)
        k_class = min(self.k, int(height) * int(width))
        class_scores, class_index = heat.flatten(2).topk(k_class, dim=2)  # [B, C, k_class]
        k_all = min(self.k, int(num_classes) * k_class)
        scores, order = class_scores.flatten(1).topk(k_all, dim=1)  # [B, K]
        classes = torch.div(order, k_class, rounding_mode="floor")
        index = class_index.flatten(1).gather(1, order)  # [B, K] flat cells
        ys = torch.div(index, width, rounding_mode="floor").to(heat.dtype)
        xs = (index % width).to(heat.dtype)
        cells = index.unsqueeze(1).expand(-1, 2, -1)  # [B, 2, K]
        off = offset.float().flatten(2).gather(2, cells)  # [B, 2, K]
        wh = size.float().flatten(2).gather(2, cells)
        cx, cy = xs + off[:, 0], ys + off[:, 1]
        half_w, half_h = wh[:, 0] / 2, wh[:, 1] / 2
        boxes = torch.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), dim=-1) * self.output_stride
        return boxes, scores, classes


class ExportableDetector(nn.Module):
    """The detector followed by :class:`GraphDecoder`: normalised images in, top-K boxes out.

    Args:
        model: a :class:`~centernet.models.CenterNet` (in eval mode).
        k: detections per image.
    """

    def __init__(self, model: nn.Module, k: int) -> None:
        super().__init__()
        self.model = model
        self.decoder = GraphDecoder(k, int(getattr(model, "output_stride", 4)))

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Args: ``images`` float ``[B, 3, H, W]``, normalised. Returns ``(boxes, scores, classes)``."""
        maps = self.model(images)
        return self.decoder(maps["heatmap"], maps["size"], maps["offset"])


def _sample_taps(x: Tensor, offset: Tensor, conv: DeformConv, out_hw: tuple[int, int]) -> Tensor:
    """Bilinearly sample ``x`` at every kernel tap of every output position (zeros outside the image).

    Returns:
        ``[B, in_channels, kh * kw, H', W']`` samples, taps in ``i * kw + j`` order.
    """
    batch, channels, height, width = x.shape
    kh, kw = conv.kernel_size
    groups = conv.deformable_groups
    out_h, out_w = out_hw
    dtype, device = x.dtype, x.device
    base_y = torch.arange(out_h, dtype=dtype, device=device) * conv.stride[0] - conv.padding[0]  # [H']
    base_x = torch.arange(out_w, dtype=dtype, device=device) * conv.stride[1] - conv.padding[1]  # [W']
    tap_i = torch.arange(kh, dtype=dtype, device=device).repeat_interleave(kw) * conv.dilation[0]  # [T]
    tap_j = torch.arange(kw, dtype=dtype, device=device).repeat(kh) * conv.dilation[1]
    offset = offset.reshape(batch, groups, kh * kw, 2, out_h, out_w)
    ys = (tap_i.view(-1, 1, 1) + base_y.view(1, -1, 1)) + offset[:, :, :, 0]  # [B, G, T, H', W'] rows
    xs = (tap_j.view(-1, 1, 1) + base_x.view(1, 1, -1)) + offset[:, :, :, 1]  # [B, G, T, H', W'] columns
    # grid_sample with align_corners=True maps -1..1 onto pixel centres 0..size-1 and reads zeros for
    # corners outside the map, as deform_conv2d does (maps need H, W >= 2 for the scaling to be exact).
    grid_x = xs * (2.0 / max(width - 1, 1)) - 1.0
    grid_y = ys * (2.0 / max(height - 1, 1)) - 1.0
    grid = torch.stack((grid_x, grid_y), dim=-1)  # [B, G, T, H', W', 2]
    grid = grid.reshape(batch * groups, kh * kw * out_h, out_w, 2)
    x_groups = x.reshape(batch * groups, channels // groups, height, width)
    sampled = F.grid_sample(x_groups, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return sampled.reshape(batch, channels, kh * kw, out_h, out_w)


class GridSampleDeformConv(nn.Module):
    """A :class:`DeformConv` computed with ``grid_sample`` + a matrix product (same parameters, same output).

    Args:
        conv: the module to wrap; its parameters are shared, not copied.
    """

    def __init__(self, conv: DeformConv) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: Tensor) -> Tensor:
        """Args: ``x [B, in_channels, H, W]``. Returns ``[B, out_channels, H', W']``."""
        conv = self.conv
        offset, mask = conv.offsets_and_mask(x)  # [B, 2GT, H', W'], [B, GT, H', W']
        batch, _, out_h, out_w = mask.shape
        taps = conv.kernel_size[0] * conv.kernel_size[1]
        samples = _sample_taps(x, offset, conv, (out_h, out_w))  # [B, Cin, T, H', W']
        groups = conv.deformable_groups
        mask = mask.reshape(batch, groups, 1, taps, out_h, out_w)
        samples = samples.reshape(batch, groups, conv.in_channels // groups, taps, out_h, out_w) * mask
        columns = samples.reshape(batch, conv.in_channels * taps, out_h * out_w)  # channel-major, tap-minor
        weight = conv.weight.reshape(conv.out_channels, conv.in_channels * taps)
        out = torch.matmul(weight, columns).reshape(batch, conv.out_channels, out_h, out_w)
        if conv.bias is not None:
            out = out + conv.bias.view(1, -1, 1, 1)
        return out


def exportable_deform_convs(module: nn.Module) -> int:
    """Replace every :class:`DeformConv` inside ``module`` by a :class:`GridSampleDeformConv` (in place).

    Returns:
        The number of modules replaced.
    """
    replaced = 0
    for name, child in list(module.named_children()):
        if isinstance(child, DeformConv):
            setattr(module, name, GridSampleDeformConv(child))
            replaced += 1
        else:
            replaced += exportable_deform_convs(child)
    return replaced


Exporter = Callable[[nn.Module, Tensor, Path], None]
EXPORTERS: Registry[Exporter] = Registry("export format")
DEFORM_CONV_MODES = ("native", "grid_sample")


@EXPORTERS.register("onnx")
def export_onnx(module: nn.Module, example: Tensor, path: Path) -> None:
    """ONNX opset 19 through the ``torch.export`` (dynamo) exporter, dynamic batch.

    The dynamo exporter writes ``torchvision::deform_conv2d`` as the standard ``DeformConv`` operator
    (opset 19, run by onnxruntime); the TorchScript-based exporter has no translation for it.
    """
    batch = torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)
    program = torch.onnx.export(
        module,
        (example,),
        dynamo=True,
        opset_version=ONNX_OPSET,
        input_names=[INPUT_NAME],
        output_names=list(OUTPUT_NAMES),
        dynamic_shapes={INPUT_NAME: {0: batch}},
        verbose=False,
    )
    if program is None:
        raise RuntimeError(f"ONNX export of {type(module).__name__} returned nothing")
    program.save(str(path))


@EXPORTERS.register("torchscript")
def export_torchscript(module: nn.Module, example: Tensor, path: Path) -> None:
    """TorchScript via ``torch.jit.trace`` (the graph has no data-dependent control flow).

    Files holding ``torchvision::deform_conv2d`` need ``import torchvision`` before ``torch.jit.load``.
    """
    with torch.no_grad():
        traced = torch.jit.trace(module, (example,), check_trace=False)
    traced.save(str(path))


def export_detector(
    model: nn.Module,
    *,
    fmt: str,
    path: str | Path,
    input_size: Sequence[int],
    k: int,
    deform_conv: str = "native",
    example_batch: int = 2,
) -> Path:
    """Export ``model`` + decoder to ``path`` in format ``fmt`` (``onnx`` | ``torchscript``).

    Args:
        model: the detector (moved to the CPU, contiguous format and eval mode here, in place).
        fmt: a name in :data:`EXPORTERS`.
        path: the output file (its folder is created).
        input_size: ``(height, width)`` of the exported input.
        k: detections per image.
        deform_conv: ``native`` (ONNX ``DeformConv`` / ``torchvision::deform_conv2d``) | ``grid_sample``
            (:class:`GridSampleDeformConv`, for runtimes without a deformable convolution).
        example_batch: batch size of the tracing example (the exported batch stays dynamic).

    Returns:
        ``path``.
    """
    exporter = EXPORTERS[fmt]
    if deform_conv not in DEFORM_CONV_MODES:
        raise ValueError(f"deform_conv must be one of {', '.join(DEFORM_CONV_MODES)}, got {deform_conv!r}")
    model = model.cpu().eval().to(memory_format=torch.contiguous_format)
    if deform_conv == "grid_sample":
        model = copy.deepcopy(model)  # the caller's model keeps its native layers (--verify compares with them)
        logger.info("%d deformable convolutions exported as grid_sample + matmul", exportable_deform_convs(model))
    module = ExportableDetector(model, k).eval()
    example = torch.zeros(example_batch, 3, int(input_size[0]), int(input_size[1]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    exporter(module, example, path)
    logger.info("exported %s (%s, input [B, 3, %d, %d], top-%d) -> %s", type(model).__name__, fmt,
                example.shape[2], example.shape[3], k, path)
    return path


RunFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def load_exported(path: str | Path, fmt: str) -> RunFn:
    """A callable running an exported file on a float32 ``[B, 3, H, W]`` batch -> ``(boxes, scores, classes)``."""
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

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
