"""Shared fixtures: a tiny synthetic shapes dataset on disk and a tiny training config."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(os.environ.get("CENTERNET_REFERENCE_DIR", REPO / "tests" / "reference"))
GOLDEN_PATH = REFERENCE_DIR / "centernet_golden.npz"
CHECKPOINT_KEYS_PATH = REFERENCE_DIR / "centernet_checkpoint_keys.json"
TTF_GOLDEN_PATH = REFERENCE_DIR / "ttfnet_golden.npz"
NOT_EXPERIMENTS = ("_base_", "tuning")  # folders of configs/ holding bases and search spaces (tools/ablate.py --tune)
EXPERIMENT_CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.yaml") if not set(NOT_EXPERIMENTS) & set(p.parts))
TUNING_SPACES = sorted((REPO / "configs").rglob("tuning/*.yaml"))


@pytest.fixture(scope="session")
def golden() -> dict[str, np.ndarray]:
    """The arrays of ``centernet_golden.npz`` (numbers produced by the original CenterNet code)."""
    with np.load(GOLDEN_PATH) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="session")
def ttf_golden() -> dict[str, np.ndarray]:
    """The arrays of ``ttfnet_golden.npz`` (TTFNet training targets produced by TTFNet's own code)."""
    with np.load(TTF_GOLDEN_PATH) as data:
        return {key: data[key] for key in data.files}


def load_script(relative_path: str) -> ModuleType:
    """Import a script of the repository (``datasets/…``, ``tools/…``) as a module."""
    path = REPO / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny shapes set (12 train / 4 val images, 64 px) written once per test session."""
    out = tmp_path_factory.mktemp("shapes")
    make_shapes = load_script("datasets/make_shapes.py")
    make_shapes.generate_shapes_dataset(out, num_train=12, num_val=4, image_size=(64, 64), seed=3)
    return out


TINY_CONFIG = """\
_base_: {base}
data:
  train: {{type: coco, ann_file: {root}/annotations/instances_train.json, img_dir: {root}/train}}
  val: {{type: coco, ann_file: {root}/annotations/instances_val.json, img_dir: {root}/val}}
  input_size: [64, 64]
  batch_size: 4
  workers: 0
model:
  neck: {{channels: [32, 32, 32]}}
  head: {{head_conv: 16}}
solver: {{epochs: 2, lr: 1.0e-3, lr_steps: [1], warmup_iters: 2, min_iters: 0}}  # no floor: 3 steps per epoch
eval: {{interval: 1}}
runtime: {{log_interval: 1, threads: 1}}
"""


@pytest.fixture
def tiny_config(tiny_shapes: Path, tmp_path: Path) -> Callable[..., Path]:
    """Factory writing a tiny experiment YAML (ResNet-18, 64 px, 2 epochs) on ``tiny_shapes``."""

    def write(extra: str = "", name: str = "tiny.yaml") -> Path:
        path = tmp_path / name
        base = REPO / "configs" / "shapes_resnet18.yaml"
        path.write_text(TINY_CONFIG.format(base=base, root=tiny_shapes) + extra)
        return path

    return write
