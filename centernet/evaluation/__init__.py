"""Evaluation: COCO mAP (pycocotools / faster-coco-eval), PR curves, VOC AP and the eval output files."""

from centernet.evaluation.coco import (
    detections_to_coco_records,
    evaluate_coco,
    evaluate_coco_with_curves,
    format_metrics_table,
)
from centernet.evaluation.io import load_detections, validate_detection_records, write_eval_outputs
from centernet.evaluation.pr_curves import PR_CURVES_FILENAME, PRCurves, extract_pr_curves, plot_pr_curves
from centernet.evaluation.voc import (
    coco_records_to_voc_detections,
    evaluate_voc,
    voc07_ap,
    voc_area_ap,
    voc_box_iou,
)

__all__ = [
    "PR_CURVES_FILENAME",
    "PRCurves",
    "coco_records_to_voc_detections",
    "detections_to_coco_records",
    "evaluate_coco",
    "evaluate_coco_with_curves",
    "evaluate_voc",
    "extract_pr_curves",
    "format_metrics_table",
    "load_detections",
    "plot_pr_curves",
    "validate_detection_records",
    "voc07_ap",
    "voc_area_ap",
    "voc_box_iou",
    "write_eval_outputs",
]
