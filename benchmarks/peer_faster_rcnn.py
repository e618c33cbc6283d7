"""Peer row: torchvision's Faster R-CNN with an FPN beside our CenterNet recipe, on the same data and budget.

    python benchmarks/peer_faster_rcnn.py --config configs/trees_efficientnet_lite0.yaml --seeds 0 1 2 \\
        [--work-dir work_dirs/peer_faster_rcnn] [--sets yell_report cross_site] [--lr 0.01] [--skip-ours]

For each seed, in one process and one after the other: our recipe (``Trainer.from_config`` of ``--config`` with
``runtime.seed``) and torchvision's ``FasterRCNN`` on the same trunk (``model.backbone`` of the config with its
ImageNet weights) under torchvision's ``FeaturePyramidNetwork``, fed by the same training loader (the config's
tiles, augmentations, batch size and input size), trained for the same number of steps with SGD (momentum 0.9,
weight decay 1e-4, torchvision's reference recipe at batch 8: lr 0.01) on the config's schedule (warmup steps, lr
x0.1 at the same epochs). Both are scored by the project's evaluation (``score_detections``: COCO AP, P/R at
IoU 0.4) on ``--sets``. Training time is the time of the training steps alone (loader included, evaluation not).

Adjustments a user makes for small objects, and nothing else: the images stay at the config's input size
(``min_size = max_size = input size``), anchors of 16-256 px (crowns are 17-74 px; torchvision's default
starts at 32), up to ``eval.topk`` detections per image above score 0.001 (for AP). Everything else is
torchvision's default. Results: ``<work-dir>/seed<seed>/<model>/eval/<set>/metrics.json``, one JSON line per
run in ``<work-dir>/runs.jsonl`` and the table ``<work-dir>/peer.md`` (mean ± std over the seeds run so far).
A run in ``runs.jsonl`` is skipped, a stopped one resumes (ours from ``last.pth``, Faster R-CNN from its last
epoch); docs/results.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import statistics
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from centernet.cli import ToolArgumentParser
from centernet.config import Config, load_config
from centernet.data.base import DetectionDataset
from centernet.data.build import build_dataset, build_loader, build_val_datasets, val_set_sections
from centernet.engine.hooks import HookBase
from centernet.engine.logging import setup_logging
from centernet.evaluation.coco import detections_to_coco_records
from centernet.inference.evaluator import score_detections
from centernet.models.registry import BACKBONES
from centernet.utils.env import seed_everything

logger = logging.getLogger("centernet.benchmarks.peer_faster_rcnn")  # shown by setup_logging

MODELS = ("centernet", "faster_rcnn")
ANCHOR_SIZES = ((16,), (32,), (64,), (128,), (256,))  # one size per FPN level (strides 4, 8, 16, 32, pool)
ASPECT_RATIOS = ((0.5, 1.0, 2.0),) * len(ANCHOR_SIZES)
FPN_CHANNELS = 256  # torchvision's default
SGD_MOMENTUM, SGD_WEIGHT_DECAY = 0.9, 1e-4
SCORE_FLOOR = 0.001  # detections kept for AP (torchvision's default 0.05 cuts the PR curve short)
RUNS_FILE, TABLE_FILE = "runs.jsonl", "peer.md"
REPORTED = ("AP", "AP50", "best_f1")


class TrunkWithFPN(nn.Module):
    """A trunk returning a list of feature maps (strides 4..32) under torchvision's FPN (plus a max-pooled level)."""

    def __init__(self, trunk: nn.Module, channels: int = FPN_CHANNELS) -> None:
        super().__init__()
        self.trunk = trunk
        feature_channels = [int(c) for c in getattr(trunk, "feature_channels")]  # noqa: B009 (any registered trunk)
        self.fpn = FeaturePyramidNetwork(feature_channels, channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = channels  # FasterRCNN reads this

    def forward(self, images: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        features = self.trunk(images)
        return self.fpn(OrderedDict((str(level), feature) for level, feature in enumerate(features)))


def build_faster_rcnn(cfg: Config, num_classes: int) -> FasterRCNN:
    """torchvision's Faster R-CNN on the config's trunk (with its weights), at the config's input size."""
    trunk = BACKBONES[cfg.model.backbone.type](weights=cfg.model.backbone.weights)
    size = max(cfg.data.input_size)
    return FasterRCNN(
        TrunkWithFPN(trunk), num_classes=num_classes + 1,  # + background
        min_size=size, max_size=size, image_mean=list(cfg.data.mean), image_std=list(cfg.data.std),
        rpn_anchor_generator=AnchorGenerator(ANCHOR_SIZES, ASPECT_RATIOS),
        box_detections_per_img=cfg.eval.topk, box_score_thresh=SCORE_FLOOR,
    )


def lr_factor(step: int, cfg: Config, steps_per_epoch: int) -> float:
    """The config's schedule as a factor of the base lr: linear warmup, x0.1 after each ``solver.lr_steps`` epoch."""
    warmup = cfg.solver.warmup_iters
    factor = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    decays = sum(step >= epoch * steps_per_epoch for epoch in cfg.solver.lr_steps)
    return factor * 0.1**decays


def to_targets(batch: dict[str, Any]) -> list[dict[str, torch.Tensor]]:
    """Our padded batch as torchvision targets: the valid, not ignored boxes; labels shifted past background 0."""
    targets = []
    for boxes, labels, valid, ignore in zip(batch["boxes"], batch["labels"], batch["valid"], batch["ignore"],
                                            strict=True):
        keep = valid & ~ignore
        targets.append({"boxes": boxes[keep], "labels": labels[keep] + 1})
    return targets


def train_faster_rcnn(cfg: Config, model: FasterRCNN, lr: float, steps: int, run_dir: Path) -> float:
    """Train ``steps`` steps on the config's training loader; the seconds the steps took (over every session).

    A checkpoint after every epoch (``faster_rcnn_last.pth``: weights, optimizer, schedule, epoch, seconds) is
    resumed from when the run was stopped.
    """
    dataset = build_dataset(cfg, "train")
    loader = build_loader(cfg, dataset, "train")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM, weight_decay=SGD_WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg, len(loader)))
    epochs, first_epoch, spent = math.ceil(steps / len(loader)), 0, 0.0
    checkpoint = run_dir / "faster_rcnn_last.pth"
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        first_epoch, spent = state["epoch"], state["seconds"]
        logger.info("faster_rcnn: resuming after epoch %d (%.0f s of training so far)", first_epoch, spent)
    model.train()
    step = first_epoch * len(loader)
    for epoch in range(first_epoch, epochs):
        started = time.perf_counter()
        loader.sampler.set_epoch(epoch)  # type: ignore[attr-defined]
        for batch in itertools.islice(loader, steps - step):
            losses = model(list(batch["images"].float().div(255.0)), to_targets(batch))
            loss = sum(losses.values())
            if not math.isfinite(float(loss.detach())):
                raise FloatingPointError(f"faster_rcnn: non-finite loss at step {step}: {losses}")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if step % cfg.runtime.log_interval == 0:
                logger.info("faster_rcnn step %d/%d loss %.4f lr %.5f", step, steps, float(loss.detach()),
                            optimizer.param_groups[0]["lr"])
        spent += time.perf_counter() - started
        run_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "epoch": epoch + 1, "seconds": spent}, f"{checkpoint}.tmp")
        Path(f"{checkpoint}.tmp").replace(checkpoint)  # a stop during the write keeps the previous epoch's
    return spent


@torch.no_grad()
def evaluate_faster_rcnn(cfg: Config, model: FasterRCNN, dataset: DetectionDataset, out_dir: Path) -> dict[str, Any]:
    """Faster R-CNN's detections on every image of ``dataset`` (whole, resized by its transform) scored like ours."""
    model.eval()
    records: list[dict[str, Any]] = []
    for index in range(len(dataset)):
        raw = dataset.load_raw(index)
        image = raw["image"][:, :, ::-1] if cfg.data.channel_order == "rgb" else raw["image"]  # read as BGR
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255.0)
        (output,) = model([tensor])
        dets = torch.cat([output["boxes"], output["scores"][:, None], (output["labels"][:, None] - 1).float()], 1)
        records += detections_to_coco_records(int(raw["image_id"]), str(raw["file_name"]), dets.numpy(),
                                              dataset.label_to_category_id, dataset.class_names)
    return score_detections(dataset, records, metric="coco", backend=cfg.eval.backend, out_dir=out_dir,
                            score_threshold=cfg.eval.score_threshold, pr_iou=cfg.eval.pr_iou,
                            max_dets=cfg.eval.max_dets)


class StepClock(HookBase):
    """Seconds of training steps (evaluations excluded), summed over sessions in ``<run_dir>/step_seconds.json``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seconds = json.loads(path.read_text())["seconds"] if path.is_file() else 0.0
        self.mark = 0.0

    def before_train(self) -> None:
        self.mark = time.perf_counter()

    def after_step(self) -> None:
        now = time.perf_counter()
        self.seconds += now - self.mark
        self.mark = now
        self.path.write_text(json.dumps({"seconds": self.seconds}))

    def after_epoch(self) -> None:
        self.mark = time.perf_counter()  # the evaluation after an epoch is not training


def run_centernet(cfg: Config, run_dir: Path, sets: list[str]) -> dict[str, Any]:
    """Train our recipe into ``run_dir`` (resuming a stopped run); ``train_s``, ``steps`` and each set's metrics."""
    from centernet.engine.trainer import Trainer

    resume = (run_dir / "checkpoints" / "last.pth").is_file()
    trainer = Trainer.from_config(cfg, run_dir, resume=True if resume else None, progress=False)
    clock = StepClock(run_dir / "step_seconds.json")
    trainer.register_hooks([clock])
    trainer.fit()
    metrics = {name: json.loads((run_dir / "eval" / name / "metrics.json").read_text()) for name in sets}
    return {"train_s": clock.seconds, "steps": trainer.iteration, "metrics": metrics}


def run_faster_rcnn(cfg: Config, run_dir: Path, sets: list[str], lr: float, steps: int) -> dict[str, Any]:
    """Train Faster R-CNN ``steps`` steps (resuming a stopped run) and score it; as :func:`run_centernet`."""
    seed_everything(cfg.runtime.seed)
    datasets = dict(build_val_datasets(cfg))
    model = build_faster_rcnn(cfg, len(datasets[sets[0]].class_names))
    train_s = train_faster_rcnn(cfg, model, lr, steps, run_dir)
    metrics = {name: evaluate_faster_rcnn(cfg, model, datasets[name], run_dir / "eval" / name) for name in sets}
    return {"train_s": train_s, "steps": steps, "metrics": metrics}


def summary_table(rows: list[dict[str, Any]], sets: list[str]) -> str:
    """Mean ± std over the seeds per model: AP, AP50, best F1 on each set and the training time."""
    header = ["model", "seeds", *(f"{name} {metric}" for name in sets for metric in REPORTED), "train time (s)"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for model in MODELS:
        runs = [row for row in rows if row["model"] == model]
        if not runs:
            continue
        cells = [model, str(len(runs))]
        for name in sets:
            for metric in REPORTED:
                values = [row["metrics"][name][metric] * (100 if metric != "best_f1" else 1) for row in runs]
                cells.append(_mean_std(values, 1 if metric != "best_f1" else 2))
        cells.append(_mean_std([row["train_s"] for row in runs], 0))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _mean_std(values: list[float], digits: int) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.{digits}f}" + (f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else "")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = ToolArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/trees_efficientnet_lite0.yaml")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--work-dir", default="work_dirs/peer_faster_rcnn")
    parser.add_argument("--sets", nargs="+", default=["yell_report", "cross_site"], help="named val sets scored")
    parser.add_argument("--lr", type=float, default=0.01, help="Faster R-CNN's SGD lr (default: 0.01)")
    parser.add_argument("--skip-ours", action="store_true", help="train Faster R-CNN only")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (both models)")
    return parser.parse_tool_args(argv)  # KEY=VALUE words after --seeds / --sets are overrides


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(None)
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    runs_path = work_dir / RUNS_FILE
    rows = [json.loads(line) for line in runs_path.read_text().splitlines()] if runs_path.is_file() else []
    for seed in args.seeds:
        cfg = load_config(args.config, [*args.overrides, f"runtime.seed={seed}", "eval.interval=0"])
        names = [name for name, _ in val_set_sections(cfg)]
        missing = [name for name in args.sets if name not in names]
        if missing:
            raise SystemExit(f"--sets {missing[0]}: {args.config} has the validation sets {names}")
        for model in MODELS if not args.skip_ours else MODELS[1:]:
            if any(row["model"] == model and row["seed"] == seed for row in rows):
                logger.info("%s seed %d is in %s: skipped", model, seed, runs_path)
                continue
            run_dir = work_dir / f"seed{seed}" / model  # a stopped run resumes from its last checkpoint
            steps = next((row["steps"] for row in rows if row["seed"] == seed and row["model"] == "centernet"),
                         cfg.solver.min_iters or cfg.solver.epochs * len(build_loader(cfg, build_dataset(cfg, "train"),
                                                                                      "train")))
            logger.info("%s seed %d -> %s", model, seed, run_dir)
            result = (run_centernet(cfg, run_dir, args.sets) if model == "centernet"
                      else run_faster_rcnn(cfg, run_dir, args.sets, args.lr, steps))
            row = {"model": model, "seed": seed, **result,
                   "metrics": {name: {k: result["metrics"][name][k] for k in REPORTED} for name in args.sets}}
            rows.append(row)
            with runs_path.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            logger.info("%s seed %d: %s", model, seed, json.dumps(row))
    table = summary_table(rows, args.sets)
    (work_dir / TABLE_FILE).write_text(table)
    logger.info("peer table (%s):\n%s", work_dir / TABLE_FILE, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
