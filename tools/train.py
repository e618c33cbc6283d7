"""Train (and evaluate) a CenterNet detector from a YAML config.

python tools/train.py --config configs/shapes_resnet18.yaml [--work-dir DIR] [--resume [PATH]] [KEY=VALUE ...]
torchrun --nproc_per_node N tools/train.py --config ... (DDP: data.batch_size per process, rank 0 writes)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from centernet.config import ConfigError, load_config
from centernet.engine.distributed import destroy_distributed
from centernet.engine.logging import setup_logging
from centernet.engine.trainer import Trainer
from centernet.utils.errors import one_line_error

logger = logging.getLogger("centernet.tools.train")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="experiment YAML file")
    parser.add_argument("--work-dir", help="run folder (default: work_dirs/<config file stem>)")
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="PATH",
        help="resume from PATH, or from <work-dir>/checkpoints/last.pth when no PATH is given",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. solver.lr=2.5e-4")
    args = parser.parse_args(argv)
    if isinstance(args.resume, str) and "=" in args.resume and not Path(args.resume).exists():
        # `--resume KEY=VALUE ...`: argparse hands the first override to --resume's optional PATH
        args.overrides.insert(0, args.resume)
        args.resume = True
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work_dir = Path(args.work_dir) if args.work_dir else Path("work_dirs") / Path(args.config).stem
    is_main = int(os.environ.get("RANK", "0")) == 0
    setup_logging(work_dir if is_main else None, level=logging.INFO if is_main else logging.WARNING)
    try:
        cfg = load_config(args.config, args.overrides)
        trainer = Trainer.from_config(cfg, work_dir, resume=args.resume, progress=not args.no_progress)
        trainer.fit()
    except (ConfigError, FileNotFoundError, ValueError, FloatingPointError, OSError) as error:
        logger.error("%s", one_line_error(error))
        logger.debug("traceback of the error above", exc_info=True)
        return 1
    finally:
        destroy_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
