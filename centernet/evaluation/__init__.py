"""Evaluation: COCO mAP (pycocotools / faster-coco-eval) and the eval output files."""

from centernet.evaluation.coco import detections_to_coco_records, evaluate_coco, format_metrics_table
from centernet.evaluation.io import load_detections, validate_detection_records, write_eval_outputs
from centernet.evaluation.voc import (
    coco_records_to_voc_detections,
    evaluate_voc,
    voc07_ap,
    voc_area_ap,
    voc_box_iou,
)

__all__ = [
    "coco_records_to_voc_detections",
    "detections_to_coco_records",
    "evaluate_coco",
    "evaluate_voc",
    "format_metrics_table",
    "load_detections",
    "validate_detection_records",
    "voc07_ap",
    "voc_area_ap",
    "voc_box_iou",
    "write_eval_outputs",
]
