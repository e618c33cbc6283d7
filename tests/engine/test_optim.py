"""Learning-rate schedule: hand-computed factors, warmup, step decay; optimizer choice."""

from __future__ import annotations

import math

import pytest
import torch

from centernet.config.schema import SolverConfig
from centernet.engine.optim import build_optimizer, build_scheduler, cosine_lr_factor, scaled_lr, step_lr_factor


def test_step_factor_by_hand() -> None:
    kwargs = {"iters_per_epoch": 10, "lr_steps": [2, 3], "gamma": 0.1, "warmup_iters": 0, "warmup_factor": 0.001}
    assert step_lr_factor(0, **kwargs) == 1.0
    assert step_lr_factor(19, **kwargs) == 1.0  # still epoch 1
    assert step_lr_factor(20, **kwargs) == pytest.approx(0.1)  # epoch 2 reached
    assert step_lr_factor(35, **kwargs) == pytest.approx(0.01)


def test_linear_warmup_by_hand() -> None:
    kwargs = {"iters_per_epoch": 100, "lr_steps": [], "gamma": 0.1, "warmup_iters": 4, "warmup_factor": 0.2}
    assert [step_lr_factor(i, **kwargs) for i in range(6)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])


def test_scheduler_drives_the_optimizer() -> None:
    solver = SolverConfig(lr=0.5, lr_steps=[1], warmup_iters=2, warmup_factor=0.0)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = build_optimizer([param], solver)
    scheduler = build_scheduler(optimizer, solver, iters_per_epoch=3)
    seen = []
    for _ in range(5):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.0, 0.25, 0.5, 0.05, 0.05])


@pytest.mark.parametrize(
    ("name", "cls"), [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)]
)
def test_optimizer_choice(name: str, cls: type) -> None:
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], SolverConfig(optimizer=name, lr=0.1))
    assert isinstance(optimizer, cls) and optimizer.param_groups[0]["lr"] == 0.1


def test_cosine_factor_by_hand() -> None:
    kwargs = {"total_iters": 10, "min_factor": 0.1, "warmup_iters": 2, "warmup_factor": 0.5}
    assert cosine_lr_factor(0, **kwargs) == pytest.approx(0.5)  # warmup start x cosine(0) = 1
    assert cosine_lr_factor(1, **kwargs) == pytest.approx(0.75 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 10))))
    assert cosine_lr_factor(5, **kwargs) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way
    assert cosine_lr_factor(10, **kwargs) == pytest.approx(0.1)
    assert cosine_lr_factor(12, **kwargs) == pytest.approx(0.1)  # stays at the floor


def test_cosine_scheduler_is_chosen_by_name() -> None:
    solver = SolverConfig(lr=1.0, schedule="cosine", epochs=2, warmup_iters=0, min_lr_factor=0.0)
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], solver)
    scheduler = build_scheduler(optimizer, solver, iters_per_epoch=2)
    seen = []
    for _ in range(4):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))])


@pytest.mark.parametrize(("reference", "expected"), [(None, 0.1), (0, 0.1), (32, 0.1 * 64 / 32), (128, 0.05)])
def test_linear_scaling_rule(reference: int | None, expected: float) -> None:
    solver = SolverConfig(lr=0.1, reference_batch_size=reference)
    assert scaled_lr(solver, global_batch_size=64) == pytest.approx(expected)
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], solver, lr=scaled_lr(solver, 64))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(expected)


def test_backbone_lr_mult_makes_a_scaled_second_group_that_follows_the_schedule() -> None:
    solver = SolverConfig(lr=0.5, lr_steps=[1], lr_gamma=0.1, backbone_lr_mult=0.1)
    model = torch.nn.ModuleDict({"backbone": torch.nn.Linear(2, 2), "head": torch.nn.Linear(2, 1)})
    optimizer = build_optimizer(model.parameters(), solver, backbone_params=model["backbone"].parameters())
    scheduler = build_scheduler(optimizer, solver, iters_per_epoch=2)
    head_group, backbone_group = optimizer.param_groups
    assert [id(p) for p in head_group["params"]] == [id(p) for p in model["head"].parameters()]
    assert [id(p) for p in backbone_group["params"]] == [id(p) for p in model["backbone"].parameters()]
    seen = []
    for _ in range(3):
        seen += [head_group["lr"], backbone_group["lr"]]
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.5, 0.05, 0.5, 0.05, 0.05, 0.005])  # (head, backbone); epoch 1 from iteration 2


def test_backbone_lr_mult_of_one_keeps_a_single_group_in_model_order() -> None:
    model = torch.nn.ModuleDict({"backbone": torch.nn.Linear(2, 2), "head": torch.nn.Linear(2, 1)})
    model["head"].bias.requires_grad_(False)
    backbone = model["backbone"].parameters()
    optimizer = build_optimizer(model.parameters(), SolverConfig(lr=0.5), backbone_params=backbone)
    assert len(optimizer.param_groups) == 1
    expected = [id(p) for p in model.parameters() if p.requires_grad]
    assert [id(p) for p in optimizer.param_groups[0]["params"]] == expected
