"""Evaluation: COCO mAP (pycocotools / faster-coco-eval), PR curves, VOC AP, box precision/recall at a score
threshold (F1 curve) and the eval output files."""

from centernet.evaluation.coco import (
    detections_to_coco_records,
    evaluate_coco,
    evaluate_coco_with_curves,
    format_metrics_table,
)
from centernet.evaluation.io import load_detections, validate_detection_records, write_eval_outputs
from centernet.evaluation.pr_curves import PR_CURVES_FILENAME, PRCurves, extract_pr_curves, plot_pr_curves
from centernet.evaluation.precision_recall import (
    F1_CURVE_FILENAME,
    detections_from_records,
    ground_truth_from_dataset,
    plot_f1_curve,
    precision_recall_report,
)
from centernet.evaluation.voc import (
    coco_records_to_voc_detections,
    evaluate_voc,
    voc07_ap,
    voc_area_ap,
    voc_box_iou,
)

__all__ = [
    "F1_CURVE_FILENAME",
    "PR_CURVES_FILENAME",
    "PRCurves",
    "coco_records_to_voc_detections",
    "detections_from_records",
    "detections_to_coco_records",
    "evaluate_coco",
    "evaluate_coco_with_curves",
    "evaluate_voc",
    "extract_pr_curves",
    "format_metrics_table",
    "ground_truth_from_dataset",
    "load_detections",
    "plot_f1_curve",
    "plot_pr_curves",
    "precision_recall_report",
    "validate_detection_records",
    "voc07_ap",
    "voc_area_ap",
    "voc_box_iou",
    "write_eval_outputs",
]
