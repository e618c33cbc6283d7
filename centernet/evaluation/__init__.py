"""Evaluation: COCO mAP (pycocotools / faster-coco-eval) and the eval output files."""

from centernet.evaluation.coco import detections_to_coco_records, evaluate_coco, format_metrics_table
from centernet.evaluation.io import load_detections, validate_detection_records, write_eval_outputs

__all__ = [
    "detections_to_coco_records",
    "evaluate_coco",
    "format_metrics_table",
    "load_detections",
    "validate_detection_records",
    "write_eval_outputs",
]
