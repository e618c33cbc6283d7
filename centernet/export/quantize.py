"""Static int8 quantization of an exported ONNX detector with ONNX Runtime, calibrated on real images.

:func:`quantize_int8` writes a QDQ model (``QuantizeLinear``/``DequantizeLinear`` pairs around the
convolutions: per-channel int8 weights, uint8 activations whose ranges come from running the fp32 model on
calibration images), which ONNX Runtime executes with integer kernels (VNNI where the CPU has it). Only
convolutions and matrix products are quantized, and by default not these (:data:`KEEP_FLOAT`):

* ``head_outputs``: the head's output convolutions (those whose output no other convolution reads: heatmap
  logits, sizes, offsets), whose small prior-level values lose most to 8 bits;
* ``depthwise``: depthwise convolutions (one filter per channel, e.g. EfficientNet's MBConv blocks), whose
  per-channel ranges vary most and which gain little from integer kernels;
* ``stem``: the first convolution, which reads the normalised image.

On the trees model these three cut the AP50 loss from 11.5 points (all convolutions) to none (docs/inference.md).
The decoder in the graph (sigmoid, max-pool peak test, top-K, box arithmetic) stays in float, so int8 changes the
features, not the decoding.
"""

from __future__ import annotations

import collections
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from centernet.export.exporter import INPUT_NAME

logger = logging.getLogger(__name__)

QUANTIZED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
KEEP_FLOAT = ("head_outputs", "depthwise", "stem")  # convolutions left in float by default (module docstring)


def _calibration_reader(inputs: Sequence[np.ndarray]) -> Any:
    """An ONNX Runtime ``CalibrationDataReader`` over float32 ``[1, 3, H, W]`` network inputs."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items: Iterator[np.ndarray] = iter(inputs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            item = next(self._items, None)
            return None if item is None else {INPUT_NAME: np.ascontiguousarray(item, dtype=np.float32)}

    return Reader()


def quantize_int8(fp32_path: str | Path, int8_path: str | Path, inputs: Sequence[np.ndarray], *,
                  method: str = "minmax", keep_float: Sequence[str] = KEEP_FLOAT) -> dict[str, Any]:
    """Write the int8 QDQ model of ``fp32_path`` to ``int8_path``, calibrated on ``inputs``.

    Args:
        fp32_path: the exported fp32 ONNX model.
        int8_path: where to write the quantized model.
        inputs: normalised float32 ``[1, 3, H, W]`` inputs of real images (the calibration set).
        method: calibration of the activation ranges, ``minmax`` | ``entropy`` | ``percentile`` (the last two
            keep every activation of every image in memory: several GB for 64 images of 384 px).
        keep_float: kinds of convolutions left in float, a subset of :data:`KEEP_FLOAT`.

    Returns:
        What was done: ``method``, ``images``, ``keep_float``, ``quantized`` (operator counts by type) and
        ``float`` (those of :data:`QUANTIZED_OPS` that stayed in float).

    Raises:
        ValueError: no calibration input, an unknown method, or no operator of the model could be quantized
            (the message names the operator types of the graph).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not inputs:
        raise ValueError("int8 calibration needs at least one image")
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got {method!r}")
    unknown = sorted(set(keep_float) - set(KEEP_FLOAT))
    if unknown:
        raise ValueError(f"keep_float: {unknown[0]!r} is not one of {', '.join(KEEP_FLOAT)}")
    calibrate = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}[method]
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)  # shapes + constant folding
        excluded = float_convolutions(prepared, keep_float)
        quantize_static(str(prepared), str(int8_path), _calibration_reader(inputs), quant_format=QuantFormat.QDQ,
                        per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        op_types_to_quantize=list(QUANTIZED_OPS), calibrate_method=calibrate,
                        nodes_to_exclude=excluded)
    quantized, left = quantized_operators(int8_path)
    if not quantized:
        import onnx

        kinds = sorted({node.op_type for node in onnx.load(str(fp32_path)).graph.node})
        raise ValueError(f"no operator of {fp32_path} could be quantized to int8 (its operators: {', '.join(kinds)}; "
                         f"quantized types: {', '.join(QUANTIZED_OPS)})")
    logger.info("int8: %s quantized, %s left in float, calibrated (%s) on %d images", dict(quantized),
                dict(left) or "none", method, len(inputs))
    return {"method": method, "images": len(inputs), "keep_float": list(keep_float), "quantized": dict(quantized),
            "float": dict(left)}


def float_convolutions(path: str | Path, kinds: Sequence[str]) -> list[str]:
    """Names of the convolutions of ``kinds`` (see :data:`KEEP_FLOAT`) in the ONNX model at ``path``."""
    import onnx

    graph = onnx.load(str(path)).graph
    convs = [node for node in graph.node if node.op_type in ("Conv", "ConvTranspose")]
    names: list[str] = []
    if "head_outputs" in kinds:
        names += output_convolutions(path)
    if "depthwise" in kinds:
        names += [node.name for node in convs if node.op_type == "Conv"
                  and any(a.name == "group" and a.i > 1 for a in node.attribute)]
    if "stem" in kinds and convs:
        names.append(convs[0].name)  # graph order is topological: the first reads the image
    return list(dict.fromkeys(names))


def output_convolutions(path: str | Path) -> list[str]:
    """Names of the convolutions whose output no other convolution reads (the head's output layers)."""
    import onnx

    graph = onnx.load(str(path)).graph
    convs = [node for node in graph.node if node.op_type in ("Conv", "ConvTranspose")]
    reads = {node.name: _reaches_conv(node.output[0], graph) for node in convs}
    return [name for name, reached in reads.items() if not reached]


def _reaches_conv(tensor: str, graph: Any, depth: int = 3) -> bool:
    """Whether a convolution reads ``tensor`` within ``depth`` nodes (through activations, adds, resizes)."""
    frontier = {tensor}
    for _ in range(depth):
        readers = [node for node in graph.node if frontier & set(node.input)]
        if any(node.op_type in ("Conv", "ConvTranspose") for node in readers):
            return True
        frontier = {output for node in readers for output in node.output}
    return False


def quantized_operators(path: str | Path) -> tuple[collections.Counter[str], collections.Counter[str]]:
    """``(quantized, float)``: counts by type of the :data:`QUANTIZED_OPS` nodes of a QDQ model whose weight
    input comes from a ``DequantizeLinear`` node, and of those whose weight does not."""
    import onnx

    graph = onnx.load(str(path)).graph
    producers = {output: node.op_type for node in graph.node for output in node.output}
    quantized: collections.Counter[str] = collections.Counter()
    left: collections.Counter[str] = collections.Counter()
    for node in graph.node:
        if node.op_type in QUANTIZED_OPS and len(node.input) > 1:
            weight_from = producers.get(node.input[1])
            (quantized if weight_from == "DequantizeLinear" else left)[node.op_type] += 1
    return quantized, left
