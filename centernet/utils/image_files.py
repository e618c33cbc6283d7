"""Finding and reading the image files a command line names (files and folders of images)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def image_files_in(folder: Path) -> list[Path]:
    """The image files directly inside ``folder`` (by extension, case-insensitive), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def collect_image_paths(items: Sequence[str | Path], option: str) -> list[Path]:
    """Expand files and folders into image paths (a folder contributes :func:`image_files_in`).

    Args:
        items: files and folders, in order.
        option: the command-line option that named them (used in errors, e.g. ``"--images"``).

    Raises:
        FileNotFoundError: an item does not exist.
        ValueError: no image was found.
    """
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            paths += image_files_in(path)
        elif path.is_file():
            paths.append(path)
        else:
            raise FileNotFoundError(f"{option} {path} does not exist")
    if not paths:
        raise ValueError(f"{option} {' '.join(str(i) for i in items)}: no images found ({', '.join(IMAGE_EXTENSIONS)})")
    return paths


def read_bgr(path: Path) -> np.ndarray:
    """``cv2.imread`` as uint8 ``[H, W, 3]`` BGR that raises a clear error instead of returning ``None``."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read image {path} (missing, unreadable or not an image)")
    return image
