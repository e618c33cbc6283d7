"""Evaluate a trained CenterNet checkpoint, or score an existing detections file, on the val set.

python tools/eval.py --config CFG --checkpoint PTH [--flip] [--scales 0.5 1.0 1.5] [--out-dir DIR] [KEY=VALUE ...]
python tools/eval.py --config CFG --predictions DETECTIONS.json [--out-dir DIR] [--val-set NAME]

With several named val sets (data.val as a list) every set is evaluated, each into <out-dir>/<name>/;
--val-set NAME evaluates one (a --predictions file belongs to one set: name it when there are several).
Precision/recall/F1 use eval.score_threshold and eval.pr_iou (docs/evaluation.md).

Test-time augmentation: --flip (heatmap and size of the mirrored pass averaged in, offset of the plain
pass); --scales runs one pass per scale and merges them per class (eval.merge=soft_nms | nms, with
eval.soft_nms_sigma, eval.soft_nms_score_thr, eval.nms_iou); eval.resize=pad keeps each image's resolution
(padded to a multiple of 32, the original --keep_res) instead of warping it into data.input_size.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from centernet.config import ConfigError, load_config
from centernet.data.build import build_loader, build_val_datasets
from centernet.data.normalize import ImageNormalizer
from centernet.engine.checkpoint import load_checkpoint, model_state_from_checkpoint
from centernet.engine.logging import setup_logging
from centernet.evaluation import load_detections
from centernet.inference.evaluator import detections_for_dataset, evaluate_model, score_detections
from centernet.inference.tta import MultiScalePredictor, build_tta, run_tta_inference
from centernet.models.build import build_model
from centernet.utils.env import select_device
from centernet.utils.errors import one_line_error

logger = logging.getLogger("centernet.tools.eval")


def split_scales(items: list[str]) -> tuple[list[float], list[str]]:
    """Split the ``--scales`` words into the scales and any ``KEY=VALUE`` overrides written after them.

    Each scale word is a number or a comma-separated list (``0.5,1`` and ``0.5 1`` both work).
    """
    scales: list[float] = []
    for position, item in enumerate(items):
        if "=" in item:
            return scales, items[position:]
        try:
            scales.extend(float(s) for s in item.split(",") if s.strip())
        except ValueError:
            raise ValueError(f"--scales expects numbers, e.g. 0.5 1.0 1.5, got {item!r}") from None
    return scales, []


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="experiment YAML file (defines the val set)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint to evaluate (checkpoints/best.pth of a run)")
    source.add_argument("--predictions", help="COCO results JSON to score instead of running a model")
    parser.add_argument("--flip", action="store_true", help="flip test-time augmentation")
    parser.add_argument("--scales", nargs="+", default=None,
                        help="test scales, e.g. 0.5 1.0 1.5 (several: multi-scale test merged with eval.merge)")
    parser.add_argument("--out-dir", help="where metrics.json/detections.json go (default: <work dir>/eval)")
    parser.add_argument("--val-set", help="evaluate only this named set of data.val (default: all)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    return parser.parse_args(argv)


def _set_dir(out_dir: Path, name: str | None) -> Path:
    """A named val set's outputs go to ``out_dir/<name>``; a single unnamed set's to ``out_dir``."""
    return out_dir if name is None else out_dir / name


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir = Path(args.out_dir) if args.out_dir else Path("work_dirs") / Path(args.config).stem / "eval"
    setup_logging(None)
    try:
        overrides = list(args.overrides)
        if args.flip:
            overrides.append("eval.flip=true")
        if args.scales is not None:
            scales, trailing = split_scales(args.scales)
            overrides += [*trailing, f"eval.scales={scales}"]
        cfg = load_config(args.config, overrides)
        tta = build_tta(cfg)
        sets = build_val_datasets(cfg, args.val_set)
        dataset = sets[0][1]
        thresholds = {"score_threshold": cfg.eval.score_threshold, "pr_iou": cfg.eval.pr_iou}
        if args.predictions:
            if len(sets) > 1:
                names = ", ".join(str(name) for name, _ in sets)
                raise ValueError(f"--predictions {args.predictions}: data.val has several sets ({names}); "
                                 "name its set with --val-set")
            score_detections(
                dataset, load_detections(args.predictions), metric=cfg.eval.metric, backend=cfg.eval.backend,
                out_dir=_set_dir(out_dir, sets[0][0]), **thresholds,
            )
            return 0
        device = select_device(cfg.runtime.device)
        state = load_checkpoint(args.checkpoint, map_location=device)
        model = build_model(cfg, len(dataset.class_names))
        try:
            model.load_state_dict(model_state_from_checkpoint(state, args.checkpoint))
        except RuntimeError as error:
            raise ValueError(
                f"checkpoint {args.checkpoint} does not fit the model of {args.config}: {str(error).splitlines()[0]}"
            ) from error
        model.to(device)
        model.to(memory_format=torch.channels_last if cfg.runtime.channels_last else torch.preserve_format)
        normalizer = ImageNormalizer(cfg.data.mean, cfg.data.std, channels_last=cfg.runtime.channels_last).to(device)
        if not tta.is_plain:
            logger.info("test-time augmentation: scales %s, flip %s, resize %s, merge %s",
                        list(tta.scales), tta.flip, tta.resize, tta.merge.method)
            predictor = MultiScalePredictor(model, normalizer, tta, input_size=cfg.data.input_size,
                                            channel_order=cfg.data.channel_order, device=device, amp=cfg.runtime.amp)
            for name, dataset in sets:
                results = run_tta_inference(predictor, dataset, progress=not args.no_progress)
                score_detections(dataset, detections_for_dataset(dataset, results), metric=cfg.eval.metric,
                                 backend=cfg.eval.backend, out_dir=_set_dir(out_dir, name), **thresholds)
            return 0
        for name, dataset in sets:
            evaluate_model(
                model,
                dataset,
                build_loader(cfg, dataset, "val", pin_memory=device.type == "cuda"),
                normalizer,
                device=device,
                topk=cfg.eval.topk,
                flip=cfg.eval.flip,
                amp=cfg.runtime.amp,
                metric=cfg.eval.metric,
                backend=cfg.eval.backend,
                out_dir=_set_dir(out_dir, name),
                progress=not args.no_progress,
                **thresholds,
            )
    except (ConfigError, FileNotFoundError, ValueError, OSError) as error:
        logger.error("%s", one_line_error(error))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
