"""Child process of the memory row: one training epoch on the synthetic set (``python -m`` entry point).

    python -m benchmarks.rows.memory_child FOLDER IMAGES WIDTH HEIGHT INPUT BATCH WORKERS THREADS
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from benchmarks.trainer_setup import make_trainer


def main(argv: list[str]) -> int:
    """Build the trainer described by ``argv`` and train one epoch (no evaluation)."""
    folder = Path(argv[0])
    images, width, height, size, batch, workers, threads = (int(v) for v in argv[1:])
    torch.set_num_threads(threads)
    trainer = make_trainer(
        folder, images=images, image_size=(width, height), input_size=size, batch=batch, workers=workers
    )
    trainer.train_one_epoch()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
