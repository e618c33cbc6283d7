"""Evaluate a trained CenterNet checkpoint, or score an existing detections file, on the val set.

python tools/eval.py --checkpoint PTH [--config CFG] [--flip] [--scales 0.5 1.0 1.5] [--out-dir DIR] [KEY=VALUE ...]
python tools/eval.py --checkpoint PTH --slice SIZE [--overlap F] [--slice-scale S] [--full-image] [--val-set NAME]
python tools/eval.py --config CFG --predictions DETECTIONS.json [--out-dir DIR] [--val-set NAME]

With several named val sets (data.val as a list) every set is evaluated, each into <out-dir>/<name>/;
--val-set NAME evaluates one (a --predictions file belongs to one set: name it when there are several).
Precision/recall/F1 use eval.score_threshold and eval.pr_iou (docs/evaluation.md).

The config (model, val set) is the one stored in the checkpoint unless --config names another; KEY=VALUE
overrides apply to either. Test-time augmentation: --flip (heatmap and size of the mirrored pass averaged
in, offset of the plain pass); --scales runs one pass per scale and merges them per class
(eval.merge=soft_nms | nms, with eval.soft_nms_sigma, eval.soft_nms_score_thr, eval.nms_iou);
eval.resize=pad keeps each image's resolution (padded to a multiple of 32, the original --keep_res).
--slice SIZE runs every evaluated set in overlapping windows of SIZE image pixels (the same sliced
inference as tools/demo.py --slice; without it, a set's own data.val[i].slice or eval.slice applies);
AP counts each image's best eval.max_dets detections.

Outputs (metrics.json, which also records the checkpoint, its epoch and the test options; detections.json,
pr_curves.png, predictions.png) go to --out-dir, by default to a folder named after the checkpoint and the
options next to the run's checkpoints folder, e.g. work_dirs/RUN/eval_best_flip/ (for --predictions:
eval_<file stem>/ next to the file). A folder that already holds metrics.json is refused unless
--overwrite. A detections file may name images by integer image_id, by file_name or by the image's name
(VOC: 000001) and classes by category_id, category_name or label; scoring it reads only the annotations.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import torch

from centernet.cli import add_slice_arguments, default_argument_parser, run_tool, setup_tool_logging, slice_from_args
from centernet.config import Config, apply_overrides, load_config
from centernet.data.build import build_loader, build_val_datasets
from centernet.data.normalize import ImageNormalizer
from centernet.evaluation import load_detections
from centernet.evaluation.io import METRICS_FILENAME
from centernet.inference.evaluator import SlicedInput, detections_for_dataset, evaluate_model, score_detections
from centernet.inference.exported import ExportedDetector, is_exported
from centernet.inference.records import resolve_records
from centernet.inference.sliced_runner import val_set_slices
from centernet.inference.slicing import SliceSettings, slice_suffix
from centernet.inference.trained_model import TrainedCheckpoint, TrainedModel, load_trained_model
from centernet.inference.tta import MultiScalePredictor, TestTimeAugmentation, build_tta, run_tta_inference
from centernet.utils.env import select_device
from centernet.utils.output_dirs import existing_results

logger = logging.getLogger("centernet.tools.eval")

CHECKPOINTS_FOLDER = "checkpoints"


def split_scales(items: list[str]) -> list[float]:
    """The ``--scales`` words as numbers; each word is a number or a comma-separated list (``0.5,1``)."""
    scales: list[float] = []
    for item in items:
        try:
            scales.extend(float(s) for s in item.split(",") if s.strip())
        except ValueError:
            raise ValueError(f"--scales expects numbers, e.g. 0.5 1.0 1.5, got {item!r}") from None
    return scales


def build_parser() -> argparse.ArgumentParser:
    parser = default_argument_parser(__doc__, config="optional",
                                     config_help="experiment YAML (default: the config stored in the checkpoint)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="checkpoint to evaluate (checkpoints/best.pth of a run), or an exported "
                                             "model file (.onnx, fp32 or int8, from tools/export.py)")
    source.add_argument("--predictions", help="detections JSON to score instead of running a model")
    parser.add_argument("--flip", action="store_true", help="flip test-time augmentation")
    parser.add_argument("--scales", nargs="+", default=None,
                        help="test scales, e.g. 0.5 1.0 1.5 (several: multi-scale test merged with eval.merge)")
    add_slice_arguments(parser)
    parser.add_argument("--out-dir", help="output folder (default: eval_<checkpoint>_<options> beside the run)")
    parser.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier evaluation")
    parser.add_argument("--val-set", help="evaluate only this named set of data.val (default: all)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_tool_args(argv)


def config_overrides(args: argparse.Namespace) -> list[str]:
    """The KEY=VALUE overrides plus those --flip and --scales stand for."""
    overrides = list(args.overrides)
    if args.flip:
        overrides.append("eval.flip=true")
    if args.scales is not None:
        overrides.append(f"eval.scales={split_scales(args.scales)}")
    return overrides


def options_suffix(tta: TestTimeAugmentation) -> str:
    """``_flip``, ``_scales0.5-1-1.5``, ``_pad``, ``_nms``: the test options that change the results."""
    parts = ["flip"] if tta.flip else []
    if list(tta.scales) != [1.0]:
        parts.append("scales" + "-".join(f"{s:g}" for s in tta.scales))
        parts.append(tta.merge.method)
    if tta.resize != "fixed":
        parts.append(tta.resize)
    return "".join(f"_{part}" for part in parts)


def default_out_dir(args: argparse.Namespace, tta: TestTimeAugmentation, sliced: SliceSettings | None = None) -> Path:
    """``<run>/eval_<checkpoint stem><options>`` (``<run>`` = the folder above ``checkpoints/``), or
    ``eval_<file stem>`` next to a --predictions file."""
    if args.predictions:
        path = Path(args.predictions)
        return path.parent / f"eval_{path.stem}"
    path = Path(args.checkpoint)
    run = path.parent.parent if path.parent.name == CHECKPOINTS_FOLDER else path.parent
    whole = "_noslice" if args.slice == 0 else ""
    return run / f"eval_{path.stem}{options_suffix(tta)}{slice_suffix(sliced)}{whole}"


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse a folder holding an earlier evaluation unless ``overwrite``."""
    if existing_results(out_dir, [METRICS_FILENAME]) and not overwrite:
        raise FileExistsError(
            f"{out_dir / METRICS_FILENAME} exists (an earlier evaluation); pass --out-dir DIR for a new folder "
            "or --overwrite to replace it"
        )


def provenance(args: argparse.Namespace, cfg: Config, tta: TestTimeAugmentation,
               trained: TrainedModel | None) -> dict[str, Any]:
    """What produced the detections: written into metrics.json next to the metrics."""
    record: dict[str, Any] = {
        "config": args.config or f"{args.checkpoint} ['config']",
        "overrides": list(args.overrides),
        "backend": cfg.eval.backend,
    }
    if trained is None:
        return {**record, "predictions": str(args.predictions)}
    return {
        **record,
        "checkpoint": str(args.checkpoint),
        "epoch": trained.checkpoint.epoch,
        "flip": tta.flip,
        "scales": list(tta.scales),
        "resize": tta.resize,
        "merge": tta.merge.method if len(tta.scales) > 1 else None,
        "topk": cfg.eval.topk,
        "amp": cfg.runtime.amp,
    }


def set_slices(args: argparse.Namespace, cfg: Config, sets: list[tuple[str | None, Any]]
               ) -> dict[str | None, SliceSettings | None]:
    """Each set's sliced inference: ``--slice`` for every set when given (``--slice 0``: none), else the config's."""
    if args.slice is None:
        return val_set_slices(cfg)
    cli_slice = slice_from_args(args)
    return {name: cli_slice for name, _ in sets}


def evaluate_exported(args: argparse.Namespace, overrides: list[str]) -> None:
    """Score an exported model file (``--checkpoint model.onnx``) on the val sets with the same pre- and
    post-processing as the PyTorch model; the val sets come from ``--config`` or the config in ``<file>.json``."""
    model = ExportedDetector(args.checkpoint)
    stored = model.runner.metadata.get("config")
    if args.config:
        cfg = load_config(args.config, overrides)
    elif isinstance(stored, dict):
        cfg = apply_overrides(stored, overrides, source=f"{args.checkpoint}.json ['config']")
    else:
        raise ValueError(f"{args.checkpoint}.json holds no config: pass --config CFG for the val sets")
    path = Path(args.checkpoint)
    cli_slice = slice_from_args(args)
    out_dir = Path(args.out_dir) if args.out_dir else path.parent / f"eval_{path.stem}{slice_suffix(cli_slice)}"
    sets = build_val_datasets(cfg, args.val_set)
    slices = set_slices(args, cfg, sets)
    for name, _ in sets:
        check_out_dir(_set_dir(out_dir, name), args.overwrite)
    record = {"model": str(path), "format": model.runner.metadata["format"],
              "quantization": model.runner.metadata.get("quantization"), "config": args.config or "stored",
              "overrides": list(args.overrides), "backend": cfg.eval.backend}
    for name, dataset in sets:
        settings = slices[name]
        run = model if settings is None else ExportedDetector(path, slice=settings)
        results = run_tta_inference(lambda image, run=run: run(image).rows(), dataset, progress=not args.no_progress)
        score_detections(dataset, detections_for_dataset(dataset, results), out_dir=_set_dir(out_dir, name),
                         provenance={**record, "slice": None if settings is None else settings.describe()},
                         **scoring_options(cfg))


def evaluate(args: argparse.Namespace) -> None:
    overrides = config_overrides(args)
    if args.checkpoint and is_exported(args.checkpoint):
        evaluate_exported(args, overrides)
        return
    checkpoint = TrainedCheckpoint.read(args.checkpoint) if args.checkpoint else None
    if args.config:
        cfg = load_config(args.config, overrides)
    elif checkpoint is not None:
        cfg = checkpoint.config(overrides)
    else:
        raise ValueError("--predictions needs --config (whose val annotations the detections are scored against)")
    tta = build_tta(cfg)
    cli_slice = slice_from_args(args)
    out_dir = Path(args.out_dir) if args.out_dir else default_out_dir(args, tta, cli_slice)
    sets = build_val_datasets(cfg, args.val_set)
    slices = set_slices(args, cfg, sets)
    for name, _ in sets:
        check_out_dir(_set_dir(out_dir, name), args.overwrite)
    if checkpoint is None:
        if len(sets) > 1:
            names = ", ".join(str(name) for name, _ in sets)
            raise ValueError(f"--predictions {args.predictions}: data.val has several sets ({names}); "
                             "name its set with --val-set")
        name, dataset = sets[0]
        records = resolve_records(load_detections(args.predictions, ids_required=False), dataset, args.predictions)
        score_detections(dataset, records, out_dir=_set_dir(out_dir, name),
                         provenance=provenance(args, cfg, tta, None), **scoring_options(cfg))
        return
    device = select_device(cfg.runtime.device)
    trained = load_trained_model(checkpoint, cfg, device=device, class_names=sets[0][1].class_names)
    record = provenance(args, cfg, tta, trained)
    for name, dataset in sets:
        run_model(trained, dataset, tta, device, _set_dir(out_dir, name), record, progress=not args.no_progress,
                  sliced=slices[name])


def scoring_options(cfg: Config) -> dict[str, Any]:
    """The metric, backend and precision/recall thresholds of ``cfg.eval``."""
    return {"metric": cfg.eval.metric, "backend": cfg.eval.backend, "score_threshold": cfg.eval.score_threshold,
            "pr_iou": cfg.eval.pr_iou, "max_dets": cfg.eval.max_dets}


def run_model(trained: TrainedModel, dataset: Any, tta: TestTimeAugmentation, device: torch.device, out_dir: Path,
              record: dict[str, Any], *, progress: bool, sliced: SliceSettings | None = None) -> None:
    cfg = trained.config
    model = trained.model.to(memory_format=torch.channels_last if cfg.runtime.channels_last else torch.preserve_format)
    normalizer = ImageNormalizer(cfg.data.mean, cfg.data.std, channels_last=cfg.runtime.channels_last).to(device)
    record = {**record, "slice": None if sliced is None else sliced.describe()}
    scoring = {"out_dir": out_dir, "provenance": record, **scoring_options(cfg)}
    if sliced is not None:
        if not tta.is_plain:
            raise ValueError("--slice runs one scale with the fixed input (flip allowed); drop --scales / eval.resize")
        logger.info("sliced inference: %s", sliced.describe())
        evaluate_model(model, dataset, None, normalizer, device=device, topk=cfg.eval.topk, flip=cfg.eval.flip,
                       amp=cfg.runtime.amp, progress=progress,
                       sliced=SlicedInput(sliced, (cfg.data.input_size[0], cfg.data.input_size[1]),
                                          cfg.data.channel_order), **scoring)
        return
    if tta.is_plain:
        loader = build_loader(cfg, dataset, "val", pin_memory=device.type == "cuda")
        evaluate_model(model, dataset, loader, normalizer, device=device, topk=cfg.eval.topk, flip=cfg.eval.flip,
                       amp=cfg.runtime.amp, progress=progress, **scoring)
        return
    logger.info("test-time augmentation: scales %s, flip %s, resize %s, merge %s",
                list(tta.scales), tta.flip, tta.resize, tta.merge.method)
    predictor = MultiScalePredictor(model, normalizer, tta, input_size=cfg.data.input_size,
                                    channel_order=cfg.data.channel_order, device=device, amp=cfg.runtime.amp)
    results = run_tta_inference(predictor, dataset, progress=progress)
    score_detections(dataset, detections_for_dataset(dataset, results), **scoring)


def _set_dir(out_dir: Path, name: str | None) -> Path:
    """A named val set's outputs go to ``out_dir/<name>``; a single unnamed set's to ``out_dir``."""
    return out_dir if name is None else out_dir / name


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_tool_logging(None)
    return run_tool(lambda: evaluate(args), logger)


if __name__ == "__main__":
    sys.exit(main())
