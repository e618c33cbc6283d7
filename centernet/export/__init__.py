"""Export a trained detector with its decoder to ONNX or TorchScript, and verify the exported file."""

from centernet.export.exporter import EXPORTERS, ExportableDetector, export_detector
from centernet.export.verify import compare_detections, load_exported

__all__ = ["EXPORTERS", "ExportableDetector", "compare_detections", "export_detector", "load_exported"]
