"""What the device check's sections share: sizes, the time budget, result records and a training step.

The training step is built from the public builders (``build_model``, ``build_criterion``,
``render_targets``, ``ImageNormalizer``, ``autocast_context``), the way a training loop uses them:
normalise the uint8 batch on the device, render the targets there, forward under autocast, losses in
float32, backward through a ``GradScaler`` (active for fp16 only), Adam step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.synthetic import random_boxes, textured_image
from centernet.config import Config, load_config
from centernet.data.normalize import ImageNormalizer
from centernet.losses.build import build_criterion
from centernet.models.build import build_model
from centernet.targets import render_targets
from centernet.utils.amp import autocast_context
from centernet.utils.env import cpu_has_fast_bf16

REPO = Path(__file__).resolve().parents[2]
MODEL_CONFIGS = {
    "ResNet-18": REPO / "configs" / "centernet_resnet18_coco_512.yaml",
    "ResDCN-18": REPO / "configs" / "centernet_resdcn18_coco_512.yaml",
    "DLA-34": REPO / "configs" / "centernet_dla34_coco_512.yaml",
}
# Inference speed on a Titan Xp reported in the CenterNet paper (Objects as Points, Table 1), batch 1, no flip.
PAPER_FPS = {"ResDCN-18": 142.0, "DLA-34": 52.0}
COCO_CLASSES = 80


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of one run (``--quick`` shrinks them)."""

    train_input: int  # side of the training-check input
    train_batch: int
    train_steps: int
    train_classes: int
    tiny_neck: bool  # small neck/head channels (quick CPU runs)
    infer_input: int
    infer_batches: tuple[int, ...]
    infer_models: tuple[str, ...]
    infer_iters: int
    throughput_input: int
    throughput_batch: int
    throughput_steps: int
    throughput_images: int  # synthetic COCO images written for the real-loader run


FULL = Sizes(
    train_input=256, train_batch=8, train_steps=30, train_classes=COCO_CLASSES, tiny_neck=False,
    infer_input=512, infer_batches=(1, 32), infer_models=("ResNet-18", "ResDCN-18", "DLA-34"), infer_iters=20,
    throughput_input=512, throughput_batch=32, throughput_steps=12, throughput_images=512,
)
QUICK = Sizes(
    train_input=64, train_batch=2, train_steps=4, train_classes=4, tiny_neck=True,
    infer_input=64, infer_batches=(1, 2), infer_models=("ResNet-18",), infer_iters=2,
    throughput_input=64, throughput_batch=2, throughput_steps=2, throughput_images=10,
)


class Budget:
    """Wall-clock budget of the whole check; sections ask before starting optional work."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.perf_counter()

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    def allows(self, needed_s: float) -> bool:
        return self.left() >= needed_s


@dataclass
class Check:
    """One line of the report: ``status`` is ``pass``, ``fail`` or ``skipped`` (with ``reason``)."""

    section: str
    name: str
    status: str
    reason: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


def skipped(section: str, name: str, reason: str) -> Check:
    return Check(section, name, "skipped", reason)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def half_precision(device: torch.device) -> str | None:
    """The reduced precision to time on ``device``: bf16 where native, else fp16 on CUDA, else None."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_fast_bf16() else None


def model_config(name: str, sizes: Sizes, *, input_size: int, batch: int, extra: list[str] | None = None) -> Config:
    """The zoo config of ``name`` with random weights at ``input_size`` (tiny neck/head for quick runs)."""
    overrides = [
        "model.backbone.weights=null", f"data.input_size=[{input_size}, {input_size}]", f"data.batch_size={batch}",
    ]
    if sizes.tiny_neck and name == "ResNet-18":
        overrides += ["model.neck.channels=[32, 32, 32]", "model.head.head_conv=16"]
    if sizes.tiny_neck and name == "ResDCN-18":
        overrides += ["model.neck.channels=[32, 16, 16]", "model.head.head_conv=16"]
    return load_config(MODEL_CONFIGS[name], overrides + (extra or []))


def synthetic_batch(
    num: int, size: int, num_classes: int, *, seed: int, max_objects: int = 16
) -> dict[str, torch.Tensor]:
    """A collated batch as the loader gives it: uint8 images and padded boxes in input pixels."""
    rng = np.random.default_rng(seed)
    images = np.stack([textured_image(rng, size, size) for _ in range(num)])  # [B, S, S, 3] uint8
    boxes = torch.zeros(num, max_objects, 4)
    labels = torch.zeros(num, max_objects, dtype=torch.long)
    valid = torch.zeros(num, max_objects, dtype=torch.bool)
    for i in range(num):
        count = int(rng.integers(1, max_objects // 2 + 1))
        xywh = random_boxes(rng, count, size, size)
        boxes[i, :count] = torch.from_numpy(np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1))
        labels[i, :count] = torch.from_numpy(rng.integers(0, num_classes, count))
        valid[i, :count] = True
    return {
        "images": torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        "boxes": boxes, "labels": labels, "valid": valid, "ignore": torch.zeros_like(valid),
    }


class TrainStep:
    """One training step of ``cfg``'s model on ``device`` (see the module docstring)."""

    def __init__(self, cfg: Config, num_classes: int, device: torch.device, *, amp: str, channels_last: bool,
                 lr: float = 5e-4) -> None:
        self.cfg, self.num_classes, self.device, self.amp = cfg, num_classes, device, amp
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = build_model(cfg, num_classes).to(device).to(memory_format=memory_format).train()
        self.criterion = build_criterion(cfg).to(device)
        self.normalizer = ImageNormalizer(cfg.data.mean, cfg.data.std, channels_last=channels_last).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")

    def __call__(self, batch: dict[str, Any]) -> torch.Tensor:
        """Train on ``batch``; returns the total loss (a float32 scalar on the device, no host sync)."""
        device, down = self.device, self.cfg.data.down_ratio
        images = self.normalizer(batch["images"].to(device, non_blocking=True))
        targets = render_targets(
            batch["boxes"].to(device, non_blocking=True) / down, batch["labels"].to(device, non_blocking=True),
            batch["valid"].to(device, non_blocking=True), ignore=batch["ignore"].to(device, non_blocking=True),
            num_classes=self.num_classes, output_size=(images.shape[-2] // down, images.shape[-1] // down),
            radius_formula=self.cfg.target.radius, min_overlap=self.cfg.target.min_overlap,
        )
        with autocast_context(device, self.amp):
            outputs = self.model(images)
        loss = torch.stack(list(self.criterion(outputs, targets).values())).sum()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach()
