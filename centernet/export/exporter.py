"""Export a trained CenterNet with its decoder to ONNX or TorchScript, and verify the exported file.

The exported graph takes a normalised float image batch ``[B, 3, H, W]`` (dynamic ``B``, the ``H, W``
of the export) and returns the top-K detections of every image on the input grid:
``boxes [B, K, 4]`` float32 ``x1, y1, x2, y2`` in input pixels, ``scores [B, K]`` float32 and
``classes [B, K]`` int64, best first. Pre-processing (the letterbox warp and normalisation) and the
mapping back to image pixels stay outside the graph: they depend on each image's size.

The decoder is :class:`centernet.decode.GraphDecoder`. Deformable convolutions export through
``torchvision.ops.deform_conv2d``'s ONNX ``DeformConv`` (opset 19; onnxruntime implements it) or, for
runtimes without it, :func:`centernet.models.dcn.exportable_deform_convs` swaps them for an equivalent
bilinear-sampling formulation (``grid_sample`` + matmul). :mod:`centernet.export.verify` runs the
exported file and compares it with the PyTorch model.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from centernet.decode import GraphDecoder
from centernet.models.dcn import exportable_deform_convs
from centernet.utils.registry import Registry

logger = logging.getLogger(__name__)

ONNX_OPSET = 19
MAX_EXPORT_BATCH = 1024  # upper bound of the dynamic batch dimension
INPUT_NAME = "images"
OUTPUT_NAMES = ("boxes", "scores", "classes")


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
        return self.decoder.decode_maps(self.model(images))  # size/offset or ltrb, by the head's output keys


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




def export_metadata(detector: Any, fmt: str, k: int, checkpoint: str | None) -> dict[str, Any]:
    """What a runtime needs to run an exported ``detector`` (a :class:`~centernet.inference.predictor.Detector`)
    as the PyTorch model runs: written as ``<file>.json`` next to the export (``read_export_metadata`` reads it)."""
    from centernet.config import config_to_dict

    return {
        "format": fmt, "input_name": INPUT_NAME, "input_size": list(detector.transform.input_size),
        "channel_order": detector.transform.channel_order,
        "mean": list(detector.normalizer_mean), "std": list(detector.normalizer_std),
        "outputs": {"boxes": "[B, K, 4] x1y1x2y2 input pixels", "scores": "[B, K]", "classes": "[B, K] int64"},
        "topk": k, "class_names": list(detector.class_names), "checkpoint": checkpoint,
        "category_ids": None if detector.category_ids is None else list(detector.category_ids),
        "score_threshold": detector.score_threshold,
        "config": None if detector.config is None else config_to_dict(detector.config),
    }
