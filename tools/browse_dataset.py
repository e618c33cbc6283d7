"""Save training (or validation) samples as the model sees them: augmented input, boxes and target heatmap.

python tools/browse_dataset.py --config CFG [--split train|val] [--num 8] [--output DIR] [--epoch 0]
                               [--zoom 1] [KEY=VALUE ...]

For each of the first --num samples of the split (with that split's transform: for train the
augment.albumentations chain, then the random crop, flip and colour augmentation, drawn exactly as training
epoch --epoch draws them) writes
<output>/<index>_<image stem>.jpg with two panels: the network input with its ground-truth boxes (class
colours; ignore regions grey) and the rendered target heatmap (centernet.targets.render_targets with
target.radius / target.min_overlap, maximum over classes) blended over the input, regions masked out of
the heatmap loss darkened. Use it to check annotations, augmentation and the Gaussian radius formula
(e.g. compare target.radius=centernet with target.radius=cornernet).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from centernet.cli import default_argument_parser, run_tool, setup_tool_logging
from centernet.config import load_config
from centernet.config.schema import Config
from centernet.data.base import DetectionDataset
from centernet.data.build import build_dataset
from centernet.targets import render_targets
from centernet.utils.visualize import draw_ground_truth, overlay_heatmap, tile_images

logger = logging.getLogger("centernet.tools.browse_dataset")

MASKED_BRIGHTNESS = 0.35  # pixels outside the heatmap-loss mask are dimmed to this fraction


def build_parser() -> argparse.ArgumentParser:
    parser = default_argument_parser(__doc__)
    parser.add_argument("--split", choices=("train", "val"), default="train", help="which dataset and transform")
    parser.add_argument("--num", type=int, default=8, help="samples to save (the first N of the split)")
    parser.add_argument("--output", help="folder for the images (default: work_dirs/<config stem>/browse_<split>)")
    parser.add_argument("--epoch", type=int, default=0, help="training epoch whose augmentation draws to show")
    parser.add_argument("--zoom", type=int, default=1, help="integer upscaling of the saved panels")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_tool_args(argv)


def render_sample_panels(
    image_bgr: np.ndarray, boxes: torch.Tensor, labels: torch.Tensor, ignore: torch.Tensor,
    class_names: list[str], cfg: Config,
) -> tuple[np.ndarray, np.ndarray, dict[str, torch.Tensor]]:
    """The ground-truth panel, the target-heatmap panel and the targets of one input-grid sample.

    Args:
        image_bgr: uint8 ``[H, W, 3]`` network input, BGR.
        boxes: float32 ``[N, 4]`` xyxy on the input grid; ``labels`` int64 ``[N]``; ``ignore`` bool ``[N]``.
        class_names: the ``C`` class names.
        cfg: supplies ``data.down_ratio`` and ``target.*``.
    """
    height, width = image_bgr.shape[:2]
    down = cfg.data.down_ratio
    targets = render_targets(
        boxes[None] / down,
        labels[None],
        torch.ones_like(labels, dtype=torch.bool)[None],
        ignore=ignore[None],
        num_classes=len(class_names),
        output_size=(height // down, width // down),
        radius_formula=cfg.target.radius,
        min_overlap=cfg.target.min_overlap,
    )
    gt_panel = draw_ground_truth(image_bgr, boxes.numpy(), labels.numpy(), class_names, ignore.numpy())
    heat_panel = overlay_heatmap(image_bgr, targets["heatmap"][0].numpy())
    mask = cv2.resize(targets["heatmap_mask"][0, 0].numpy(), (width, height), interpolation=cv2.INTER_NEAREST)
    dim = np.where(mask[..., None] > 0, 1.0, MASKED_BRIGHTNESS)
    heat_panel = (heat_panel * dim).astype(np.uint8)
    return gt_panel, heat_panel, targets


def browse(args: argparse.Namespace) -> None:
    if args.num < 1 or args.zoom < 1:
        raise ValueError(f"--num and --zoom must be >= 1, got {args.num} and {args.zoom}")
    cfg = load_config(args.config, args.overrides)
    dataset = build_dataset(cfg, args.split)
    dataset.set_epoch(args.epoch)
    default_dir = Path("work_dirs") / Path(args.config).stem / f"browse_{args.split}"
    out_dir = Path(args.output) if args.output else default_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    count = min(args.num, len(dataset))
    for index in range(count):
        save_sample(dataset, index, cfg, out_dir, args.zoom)
    logger.info("%d samples of %s (%s) -> %s", count, args.config, args.split, out_dir)


def save_sample(dataset: DetectionDataset, index: int, cfg: Config, out_dir: Path, zoom: int) -> None:
    """Write the two panels of sample ``index`` as ``<index>_<image stem>.jpg``."""
    sample = dataset[index]
    image = sample["image"].permute(1, 2, 0).numpy()
    if cfg.data.channel_order == "rgb":
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    gt_panel, heat_panel, targets = render_sample_panels(
        np.ascontiguousarray(image), sample["boxes"], sample["labels"], sample["ignore"],
        list(dataset.class_names), cfg,
    )
    tiled = tile_images([gt_panel, heat_panel])
    if zoom > 1:
        tiled = cv2.resize(tiled, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
    path = out_dir / f"{index:04d}_{Path(sample['meta']['file_name']).stem}.jpg"
    if not cv2.imwrite(str(path), tiled):
        raise OSError(f"could not write {path}")
    logger.info("%s: %d boxes, %d drawn as targets, %d ignore regions", path.name, len(sample["boxes"]),
                int(targets["mask"].sum()), int(sample["ignore"].sum()))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_tool_logging(None)
    return run_tool(lambda: browse(args), logger)


if __name__ == "__main__":
    sys.exit(main())
