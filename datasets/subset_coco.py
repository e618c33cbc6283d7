"""Write a random subset of a COCO "instances" file: N images (seeded) with their annotations.

How a small custom dataset is simulated from a shipped one (docs/training.md, "Small datasets"):

    python datasets/subset_coco.py --ann datasets/data/shapes/annotations/instances_train.json \
        --num-images 150 --seed 0 --out datasets/data/shapes/annotations/instances_train_150.json

The images keep their ids and ``file_name`` entries (the subset uses the same ``img_dir``); categories
are copied whole, so label numbering and category ids stay those of the full set. The output file must
not exist yet (``--overwrite`` replaces it).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger("subset_coco")


def subset(coco: dict[str, Any], num_images: int, seed: int) -> dict[str, Any]:
    """``num_images`` images of ``coco`` drawn without replacement with ``random.Random(seed)``, in
    their original order, with exactly their annotations.

    Raises:
        ValueError: ``num_images`` is not in ``[1, number of images]``, or the file misses a COCO key.
    """
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            raise ValueError(f"not a COCO instances file: '{key}' must be a list")
    images = coco["images"]
    if not 1 <= num_images <= len(images):
        raise ValueError(f"--num-images must be in [1, {len(images)}] (the images of the file), got {num_images}")
    chosen = set(random.Random(seed).sample(range(len(images)), num_images))
    kept = [image for index, image in enumerate(images) if index in chosen]
    ids = {image["id"] for image in kept}
    return {**coco, "images": kept, "annotations": [a for a in coco["annotations"] if a["image_id"] in ids]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ann", required=True, help="COCO instances JSON to draw from")
    parser.add_argument("--num-images", type=int, required=True, help="images in the subset")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the draw (default 0)")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = parse_args(argv)
    source, out = Path(args.ann), Path(args.out)
    try:
        if out.exists() and not args.overwrite:
            raise ValueError(f"{out} exists; choose another --out or add --overwrite")
        coco = json.loads(source.read_text())
        if not isinstance(coco, dict):
            raise ValueError("expected a JSON object")
        result = subset(coco, args.num_images, args.seed)
    except FileNotFoundError:
        logger.error("%s does not exist (expected a COCO instances JSON file)", source)
        return 1
    except (ValueError, json.JSONDecodeError) as error:
        logger.error("%s: %s", source, error)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result))
    logger.info("wrote %s: %d of %d images, %d annotations (seed %d)", out, len(result["images"]),
                len(coco["images"]), len(result["annotations"]), args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
