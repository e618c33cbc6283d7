"""``solver.min_iters``: training plans computed by hand, and a trainer built with a stretched plan."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from centernet.config import load_config
from centernet.config.schema import SolverConfig
from centernet.engine.hooks import EvalHook
from centernet.engine.optim import TrainingPlan, plan_training
from centernet.engine.trainer import Trainer


def solver(**changes: object) -> SolverConfig:
    return dataclasses.replace(SolverConfig(), **changes)  # type: ignore[arg-type]


def test_trees_recipe_is_stretched_to_min_iters() -> None:
    # 64 tiles / batch 8 = 8 iterations per epoch; 20 epochs = 160 < 1000: ceil(1000 / 8) = 125 epochs, x6.25.
    # The warmup is counted in steps and is not stretched.
    plan = plan_training(solver(epochs=20, lr_steps=[16], warmup_iters=20, min_iters=1000), 8, 10)
    assert plan == TrainingPlan(epochs=125, iters_per_epoch=8, total_iters=1000, lr_steps=(100,), warmup_iters=20,
                                eval_interval=63, stretch=6.25)  # 10 x 6.25 = 62.5, rounded half up
    assert plan.describe() == ("125 epochs x 8 iterations = 1000 iterations, lr steps at epochs [100], warmup 20 "
                               "iterations, evaluation every 63 epochs (stretched x6.25 to reach solver.min_iters)")


def test_original_schedule_on_one_batch_per_epoch() -> None:
    # 140 epochs x 1 iteration < 1000: 1000 epochs, x 1000/140; 90 -> 642.86 -> 643, 120 -> 857.14 -> 857, 5 -> 36.
    plan = plan_training(solver(epochs=140, lr_steps=[90, 120], warmup_iters=0, min_iters=1000), 1, 5)
    assert (plan.epochs, plan.total_iters, plan.lr_steps, plan.warmup_iters, plan.eval_interval) == (
        1000, 1000, (643, 857), 0, 36)
    assert plan.stretch == pytest.approx(1000 / 140)


def test_enough_iterations_leave_the_config_as_written() -> None:
    for min_iters in (0, 100, 160):  # 20 x 8 = 160 steps already
        plan = plan_training(solver(epochs=20, lr_steps=[16], warmup_iters=20, min_iters=min_iters), 8, 10)
        assert plan == TrainingPlan(epochs=20, iters_per_epoch=8, total_iters=160, lr_steps=(16,), warmup_iters=20,
                                    eval_interval=10, stretch=1.0)
        assert "stretched" not in plan.describe()


def test_epochs_round_up_and_only_after_the_last_stays_so() -> None:
    # 3 epochs x 7 = 21 < 50: ceil(50 / 7) = 8 epochs (56 steps), x8/3; interval 0 stays 0, warmup stays 3.
    plan = plan_training(solver(epochs=3, lr_steps=[2], warmup_iters=3, min_iters=50), 7, 0)
    assert (plan.epochs, plan.total_iters, plan.lr_steps, plan.warmup_iters, plan.eval_interval) == (
        8, 56, (5,), 3, 0)  # 2 x 8/3 = 5.33 -> 5
    assert "evaluation every 8 epochs" in plan.describe()


def test_bad_values_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match=r"solver\.min_iters must be >= 0, got -1"):
        plan_training(solver(min_iters=-1), 8, 1)
    with pytest.raises(ValueError, match=r"solver\.epochs must be >= 1 to stretch to solver\.min_iters, got 0"):
        plan_training(solver(epochs=0, min_iters=10), 8, 1)


def test_trainer_follows_the_plan(tiny_config: Callable[..., Path], tmp_path: Path,
                                  caplog: pytest.LogCaptureFixture) -> None:
    # tiny: 12 images / batch 4 = 3 iterations per epoch, 2 epochs, lr step at epoch 1, warmup 2, eval every epoch.
    # min_iters 10: ceil(10 / 3) = 4 epochs (x2): lr step at epoch 2, warmup still 2 iterations, eval every 2 epochs.
    cfg = load_config(tiny_config(), ["solver.min_iters=10", "solver.lr_gamma=0.1"])
    with caplog.at_level(logging.INFO, logger="centernet"):
        trainer = Trainer.from_config(cfg, tmp_path / "work", progress=False)
    assert trainer.max_epochs == 4 and trainer.iters_per_epoch == 3
    factor = trainer.scheduler.lr_lambdas[0]  # type: ignore[attr-defined]
    assert factor(1) == pytest.approx(0.001 + 0.999 * 1 / 2)  # in the 2-iteration warmup
    assert factor(2) == 1.0 and factor(5) == 1.0
    assert factor(6) == pytest.approx(0.1)  # epoch 2 (from 0) starts at iteration 2 x 3
    assert [hook.interval for hook in trainer.hooks if isinstance(hook, EvalHook)] == [2]
    assert ("plan: 4 epochs x 3 iterations = 12 iterations, lr steps at epochs [2], warmup 2 iterations, "
            "evaluation every 2 epochs (stretched x2 to reach solver.min_iters)") in caplog.text
