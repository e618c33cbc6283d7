"""Correctness on the device: short training runs in every precision, and device results equal to the CPU's."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from benchmarks.gpu_check.common import Budget, Check, Sizes, TrainStep, model_config, skipped, sync, synthetic_batch
from centernet.decode import decode_detections
from centernet.losses import GHMC, BCEHeatmapLoss, SigmoidFocalLoss, penalty_reduced_focal_loss
from centernet.losses import penalty_reduced_focal_loss_reference as plain_focal
from centernet.targets import render_targets
from centernet.utils.env import cpu_has_fast_bf16

SECTION_TRAIN = "training"
SECTION_EQUAL = "device equals CPU"
TRAIN_MODELS = ("ResNet-18", "ResDCN-18")
PRECISIONS = ("fp32", "bf16", "fp16")
WINDOW = 5  # losses averaged at the start and the end of a run
# Tolerances of device-vs-CPU comparisons (float32 on both; different kernels and summation orders).
TARGET_ATOL = 1e-6
LOSS_RTOL = 1e-5
GRAD_RTOL_OF_MAX = 1e-5
DECODE_BOX_ATOL = 1e-4
DECODE_SCORE_ATOL = 1e-6


def training_checks(device: torch.device, sizes: Sizes, budget: Budget) -> list[Check]:
    """``train_steps`` steps on one fixed batch per model x precision x memory format: finite, decreasing."""
    checks: list[Check] = []
    batch = synthetic_batch(sizes.train_batch, sizes.train_input, sizes.train_classes, seed=0)
    for model_name in TRAIN_MODELS:
        cfg = model_config(model_name, sizes, input_size=sizes.train_input, batch=sizes.train_batch)
        for amp in PRECISIONS:
            for channels_last in (False, True):
                name = f"{model_name}, {amp}, channels_last={'on' if channels_last else 'off'}"
                if amp == "fp16" and device.type != "cuda":
                    checks.append(skipped(SECTION_TRAIN, name, "fp16 autocast needs CUDA"))
                    continue
                if amp == "bf16" and device.type == "cpu" and not cpu_has_fast_bf16():
                    checks.append(skipped(SECTION_TRAIN, name, "no native bfloat16 on this CPU (emulated: too slow)"))
                    continue
                if not budget.allows(20):
                    checks.append(skipped(SECTION_TRAIN, name, "time budget spent"))
                    continue
                torch.manual_seed(0)
                step = TrainStep(cfg, sizes.train_classes, device, amp="off" if amp == "fp32" else amp,
                                 channels_last=channels_last)
                losses = torch.stack([step(batch) for _ in range(sizes.train_steps)]).float().cpu().tolist()
                window = min(WINDOW, max(1, len(losses) // 2))
                first, last = sum(losses[:window]) / window, sum(losses[-window:]) / window
                finite = all(math.isfinite(v) for v in losses)
                status = "pass" if finite and last < first else "fail"
                reason = "" if status == "pass" else ("non-finite loss" if not finite else "loss did not go down")
                checks.append(Check(SECTION_TRAIN, name, status, reason, {
                    "steps": len(losses), "first_losses": losses[:window], "last_losses": losses[-window:],
                    "grad_scaler": amp == "fp16",
                }))
    return checks


def _compare(name: str, device_value: torch.Tensor, cpu_value: torch.Tensor, *, atol: float, rtol: float) -> Check:
    got = device_value.detach().float().cpu()
    want = cpu_value.detach().float()
    if got.shape != want.shape:
        return Check(SECTION_EQUAL, name, "fail", f"shape {tuple(got.shape)} != {tuple(want.shape)}")
    error = (got - want).abs().max().item() if got.numel() else 0.0
    bound = atol + rtol * (want.abs().max().item() if want.numel() else 0.0)
    status = "pass" if error <= bound else "fail"
    return Check(SECTION_EQUAL, name, status, "" if status == "pass" else f"max error {error:.3g} > {bound:.3g}",
                 {"max_abs_error": error, "tolerance": bound})


def _loss_inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(4, 6, 32, 40, generator=gen) * 2 - 2
    target = torch.rand(4, 6, 32, 40, generator=gen) ** 6 * 0.99
    target[torch.rand(4, 6, 32, 40, generator=gen) < 0.005] = 1.0
    mask = (torch.rand(4, 1, 32, 40, generator=gen) > 0.1).float()
    return logits, target, mask


def _loss_and_grad(
    fn: Callable[..., torch.Tensor], logits: torch.Tensor, *args: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    x = logits.detach().clone().requires_grad_(True)
    loss = fn(x, *args)
    loss.backward()
    assert x.grad is not None
    return loss.detach(), x.grad


def equality_checks(device: torch.device, *, quick: bool) -> list[Check]:
    """``render_targets``, the heatmap losses (value and gradient) and ``decode_detections`` on the device vs CPU.

    A quick run on the CPU skips the compiled focal-loss kernels (compiling takes longer than the run).
    """
    note = "the device is the CPU: compared with itself" if device.type == "cpu" else ""
    checks: list[Check] = []
    batch = synthetic_batch(3, 128, 5, seed=1)
    boxes, labels, valid = batch["boxes"] / 4, batch["labels"], batch["valid"]
    ignore = torch.zeros_like(valid)
    ignore[0, 0] = True
    cpu_targets = render_targets(boxes, labels, valid, ignore=ignore, num_classes=5, output_size=(32, 32))
    dev_targets = render_targets(boxes.to(device), labels.to(device), valid.to(device), ignore=ignore.to(device),
                                 num_classes=5, output_size=(32, 32))
    for key, cpu_value in cpu_targets.items():
        checks.append(_compare(f"render_targets[{key}]", dev_targets[key], cpu_value, atol=TARGET_ATOL, rtol=0.0))
    logits, target, mask = _loss_inputs(2)
    losses: dict[str, Callable[..., torch.Tensor]] = {
        "penalty_reduced_focal (eager)": lambda x, y, m: penalty_reduced_focal_loss(x, y, m, backend="eager"),
        "penalty_reduced_focal (compiled)": lambda x, y, m: penalty_reduced_focal_loss(x, y, m, backend="compiled"),
        "penalty_reduced_focal (plain formula)": plain_focal,
        "focal": SigmoidFocalLoss(),
        "ghm_c": lambda x, y, m: GHMC(bins=10).to(x.device)(x, y, m),
        "bce": BCEHeatmapLoss(),
    }
    cpu_loss, cpu_grad = _loss_and_grad(plain_focal, logits, target, mask)
    for name, fn in losses.items():
        if quick and device.type == "cpu" and "compiled" in name:
            checks.append(skipped(SECTION_EQUAL, name, "--quick on the CPU: compiling takes longer than the run"))
            continue
        reference = (cpu_loss, cpu_grad) if name.startswith("penalty") else _loss_and_grad(fn, logits, target, mask)
        dev_loss, dev_grad = _loss_and_grad(fn, logits.to(device), target.to(device), mask.to(device))
        checks.append(_compare(f"{name} loss", dev_loss, reference[0], atol=0.0, rtol=LOSS_RTOL))
        checks.append(_compare(f"{name} gradient", dev_grad, reference[1], atol=0.0, rtol=GRAD_RTOL_OF_MAX))
    gen = torch.Generator().manual_seed(3)
    heat = torch.randn(2, 5, 48, 40, generator=gen)
    size = torch.rand(2, 2, 48, 40, generator=gen) * 20
    offset = torch.rand(2, 2, 48, 40, generator=gen)
    cpu_dets = decode_detections(heat, size, offset, k=50)
    dev_dets = decode_detections(heat.to(device), size.to(device), offset.to(device), k=50)
    sync(device)
    for column, (what, atol) in {4: ("scores", DECODE_SCORE_ATOL), 5: ("classes", 0.0)}.items():
        checks.append(_compare(f"decode_detections {what}", dev_dets[..., column], cpu_dets[..., column], atol=atol,
                               rtol=0.0))
    checks.append(_compare("decode_detections boxes", dev_dets[..., :4], cpu_dets[..., :4], atol=DECODE_BOX_ATOL,
                           rtol=0.0))
    for check in checks:
        check.reason = check.reason or note
    return checks
