"""Speed on the device: inference images/s (decode included), the focal loss, and training images/s.

Inference times ``model(x)`` on a ready normalised batch plus :func:`decode_detections` and the copy of
the detections to the host; the variants are cumulative: fp32, reduced precision (bf16 where native,
else fp16), + channels_last with BatchNorm folded, + ``torch.compile``. Training compares the COCO
ResNet-18 recipe fed by the real loader (``data.workers`` = CPU count, JPEG decoding and augmentation)
with the same step fed one batch already in memory.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.gpu_check.common import (
    COCO_CLASSES,
    PAPER_FPS,
    Budget,
    Check,
    Sizes,
    TrainStep,
    half_precision,
    model_config,
    skipped,
    sync,
    synthetic_batch,
)
from benchmarks.synthetic import write_coco_set
from centernet.data.build import build_dataset, build_loader
from centernet.decode import decode_detections
from centernet.inference.optimize import optimize_model, plan_optimizations
from centernet.inference.runner import predict_maps
from centernet.losses import penalty_reduced_focal_loss, penalty_reduced_focal_loss_reference
from centernet.models.build import build_model
from centernet.utils.amp import autocast_context

SECTION_INFER = "inference speed"
SECTION_LOSS = "focal loss speed"
SECTION_TRAIN = "training speed"
WARMUP = 3
COMPILE_BUDGET_S = 120  # time a compiled variant may need (compiling included)
TOPK = 100
QUICK_NO_COMPILE = "--quick on the CPU: compiling takes longer than the run"


def _peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _time(fn: Callable[[], object], device: torch.device, iters: int) -> tuple[float, float]:
    """``(first call s, mean s per call over iters)`` after ``WARMUP`` calls (the first one timed apart)."""
    start = time.perf_counter()
    fn()
    sync(device)
    first = time.perf_counter() - start
    for _ in range(WARMUP - 1):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return first, (time.perf_counter() - start) / iters


def _variants(device: torch.device) -> list[tuple[str, str, str | None]]:
    """``(label, amp, optimize)`` cumulative variants (the reduced precision one skipped when there is none)."""
    half = half_precision(device)
    amp, label = (half, half) if half else ("off", "fp32")
    return [
        ("fp32", "off", None),
        (half or "reduced precision", amp, None),
        (f"{label} + channels_last + fold_bn", amp, "fast"),
        (f"{label} + channels_last + fold_bn + compile", amp, "fast,compile"),
    ]


def inference_checks(device: torch.device, sizes: Sizes, budget: Budget, *, quick: bool) -> list[Check]:
    """Every model and batch size without compiling first, then the compiled variants with the time left."""
    checks: list[Check] = []
    models: dict[str, torch.nn.Module] = {}
    for model_name in sizes.infer_models:
        cfg = model_config(model_name, sizes, input_size=sizes.infer_input, batch=1)
        torch.manual_seed(0)
        models[model_name] = build_model(cfg, COCO_CLASSES).to(device).eval()
    variants = _variants(device)
    ordered = sorted(variants, key=lambda variant: "compile" in (variant[2] or ""))  # stable: compiled ones last
    for label, amp, optimize in ordered:
        compiled = bool(optimize and "compile" in optimize)
        for model_name, base in models.items():
            for batch in sizes.infer_batches:
                name = f"{model_name}, {sizes.infer_input}px, B={batch}, {label}"
                if label == "reduced precision":
                    checks.append(skipped(SECTION_INFER, name, "no native reduced precision on this CPU"))
                elif compiled and quick and device.type == "cpu":
                    checks.append(skipped(SECTION_INFER, name, QUICK_NO_COMPILE))
                elif not budget.allows(COMPILE_BUDGET_S if compiled else 20):
                    checks.append(skipped(SECTION_INFER, name, "time budget spent"))
                else:
                    checks.append(_infer_one(name, base, device, batch, sizes, amp, optimize, model_name))
    return checks


def _infer_one(
    name: str, base: torch.nn.Module, device: torch.device, batch: int, sizes: Sizes, amp: str,
    optimize: str | None, model_name: str,
) -> Check:
    model = base
    plan = plan_optimizations(optimize, device=device, amp=amp, channels_last=False)
    size = sizes.infer_input
    if optimize:
        model = optimize_model(copy.deepcopy(base), plan, torch.zeros(1, 3, size, size, device=device))
    memory_format = torch.channels_last if plan.channels_last else torch.contiguous_format
    images = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=memory_format)

    @torch.inference_mode()
    def run() -> torch.Tensor:
        with autocast_context(device, plan.amp):
            maps = predict_maps(model, images)
        return decode_detections(maps["heatmap"], maps["size"], maps["offset"], k=TOPK).cpu()

    _reset_peak(device)
    first_s, per_call_s = _time(run, device, sizes.infer_iters)
    figures: dict[str, Any] = {
        "images_per_s": batch / per_call_s, "ms_per_batch": per_call_s * 1000, "first_call_s": first_s,
        "peak_memory_mib": _peak_mib(device),
    }
    if batch == 1 and model_name in PAPER_FPS:
        figures["paper_fps_titan_xp"] = PAPER_FPS[model_name]
    return Check(SECTION_INFER, name, "pass", "", figures)


def loss_checks(device: torch.device, budget: Budget, *, quick: bool) -> list[Check]:
    """Forward + backward of the penalty-reduced focal loss (COCO-size heatmap): plain, eager fused, compiled."""
    shape = (4, 8, 32, 32) if quick else (32, COCO_CLASSES, 128, 128)
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(shape, generator=gen) * 2 - 4).to(device)
    target = (torch.rand(shape, generator=gen) ** 8 * 0.99).to(device)
    mask = torch.ones(shape[0], 1, *shape[2:], device=device)
    variants: dict[str, Callable[..., torch.Tensor]] = {
        "plain formula": penalty_reduced_focal_loss_reference,
        "fused, eager": lambda x, y, m: penalty_reduced_focal_loss(x, y, m, backend="eager"),
        "fused, compiled": lambda x, y, m: penalty_reduced_focal_loss(x, y, m, backend="compiled"),
    }
    checks: list[Check] = []
    label = f"B={shape[0]}, C={shape[1]}, {shape[2]}x{shape[3]}"
    for name, fn in variants.items():
        if "compiled" in name and quick and device.type == "cpu":
            checks.append(skipped(SECTION_LOSS, f"{name}, {label}", QUICK_NO_COMPILE))
            continue
        if not budget.allows(COMPILE_BUDGET_S if "compiled" in name else 10):
            checks.append(skipped(SECTION_LOSS, f"{name}, {label}", "time budget spent"))
            continue

        def step(fn: Callable[..., torch.Tensor] = fn) -> None:
            fn(logits.detach().requires_grad_(True), target, mask).backward()

        _reset_peak(device)
        first_s, per_call_s = _time(step, device, 3 if quick else 10)
        checks.append(Check(SECTION_LOSS, f"{name}, {label}", "pass", "", {
            "ms_fwd_bwd": per_call_s * 1000, "first_call_s": first_s, "peak_memory_mib": _peak_mib(device),
        }))
    return checks


def training_speed_checks(
    device: torch.device, sizes: Sizes, scratch: Path, budget: Budget, *, quick: bool
) -> list[Check]:
    """Training images/s of the COCO ResNet-18 recipe: real loader vs one batch in memory; peak memory."""
    if not budget.allows(60):
        return [skipped(SECTION_TRAIN, "ResNet-18 COCO recipe", "time budget spent")]
    workers = 0 if quick else os.cpu_count() or 1  # spawning workers alone takes longer than a quick run
    ann_file, img_dir = write_coco_set(scratch / "coco", sizes.throughput_images)
    cfg = model_config("ResNet-18", sizes, input_size=sizes.throughput_input, batch=sizes.throughput_batch, extra=[
        f"data.train={{type: coco, ann_file: {ann_file}, img_dir: {img_dir}}}", f"data.workers={workers}",
    ])
    amp, channels_last = cfg.runtime.amp, cfg.runtime.channels_last
    if amp == "fp16" and device.type == "cpu":
        amp = "off"
    step = TrainStep(cfg, COCO_CLASSES, device, amp=amp, channels_last=channels_last, lr=1.25e-4)
    loader = build_loader(cfg, build_dataset(cfg, "train"), "train", pin_memory=device.type == "cuda")
    batches = iter(loader)
    steps = sizes.throughput_steps
    needed = WARMUP + steps
    if len(loader) < needed:
        return [Check(SECTION_TRAIN, "ResNet-18 COCO recipe", "fail", f"loader has {len(loader)} < {needed} batches")]
    _reset_peak(device)
    for _ in range(WARMUP):
        step(next(batches))
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step(next(batches))
    sync(device)
    loader_s = (time.perf_counter() - start) / steps
    peak = _peak_mib(device)
    del batches, loader  # stops the worker processes
    memory_batch = synthetic_batch(sizes.throughput_batch, sizes.throughput_input, COCO_CLASSES, seed=4)
    if device.type == "cuda":
        memory_batch = {key: value.to(device) for key, value in memory_batch.items()}
    _, memory_s = _time(lambda: step(memory_batch), device, steps)
    batch = sizes.throughput_batch
    name = f"ResNet-18 COCO recipe, {sizes.throughput_input}px, B={batch}, amp={amp}, channels_last={channels_last}"
    return [Check(SECTION_TRAIN, name, "pass", "", {
        "images_per_s_real_loader": batch / loader_s, "images_per_s_from_memory": batch / memory_s,
        "loader_over_memory": memory_s / loader_s, "loader_workers": workers, "peak_memory_mib": peak,
    })]
