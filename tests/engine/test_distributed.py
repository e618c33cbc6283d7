"""DDP: two real ``torchrun`` CPU (Gloo) processes train and evaluate like one process with the global batch.

Why the two runs can agree: every rank draws the same per-epoch permutation and takes every second
index of it, so the two ranks' batches of 2 together are exactly the single process's batch of 4;
augmentation is seeded per (seed, epoch, sample index), so each sample is identical whoever loads it;
``runtime.sync_bn`` makes BatchNorm use the statistics of the global batch of 4 (without it each rank
normalises with its own 2 images and the gradients differ); and the loss terms are normalised by the
global number of positives / objects. What remains are float rounding differences (sums in another
order), hence a tolerance instead of bitwise equality. The runs use SGD in fp32: Adam's first steps are
``lr * sign(gradient)``, which turns the rounding noise of near-zero gradient entries into full-size
steps of either sign, and bf16 autocast rounds differently for other batch shapes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from centernet.config import load_config
from centernet.data.build import build_dataset
from centernet.engine.checkpoint import load_checkpoint
from centernet.engine.trainer import Trainer
from centernet.inference.evaluator import in_dataset_order
from centernet.losses import CenterNetCriterion, build_heatmap_loss
from centernet.losses.box_terms import LtrbGIoUTerms
from centernet.losses.build import build_criterion
from centernet.targets import render_targets, render_ttf_targets
from tests.conftest import REPO

TORCHRUN_TIMEOUT_S = 240
# SGD, lr 0.05, 3 steps: measured differences were ~2e-6 on the CPU this was first written on and are up to
# 6e-5 (conv1, 5% of its weights) on an AMD EPYC, whose convolution kernels sum in another order; the
# per-step loss terms (asserted below to 1e-5) are what shows that the all-reduced normalisers match.
WEIGHT_ATOL = 2e-4
# TTFNet's ltrb head starts at relu(raw ~ 0): a rounding difference that moves a cell's raw output across 0
# switches its box gradient on or off, so weights differ by up to ~2e-4 while every step's loss terms agree
# to 1e-6 (asserted below, so the normalisers are the same).
LTRB_WEIGHT_ATOL = 5e-4


def torchrun(nproc: int, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``torchrun --standalone --nproc_per_node nproc tools/train.py args`` on the CPU."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        str(REPO / "tools" / "train.py"), *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(command, capture_output=True, text=True, timeout=TORCHRUN_TIMEOUT_S, cwd=cwd, env=env)


COMMON = [
    "solver.epochs=1", "runtime.device=cpu", "runtime.amp=off", "eval.batch_size=1",
    "solver.optimizer=sgd", "solver.lr=0.1", "solver.reference_batch_size=8",
]
DDP_OVERRIDES = ["data.batch_size=2", "runtime.sync_bn=true"]
TTFNET = ["target.heatmap=elliptical", "target.box=gaussian_area", "model.head.box=ltrb", "loss.box.type=giou"]
SETUPS = {"centernet": COMMON, "ttfnet": [*COMMON, *TTFNET]}


@pytest.fixture(scope="module", params=list(SETUPS))
def ddp_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            tiny_shapes: Path) -> tuple[Path, Path, list[str]]:
    """A 1-epoch (3-step) DDP run on 2 ranks x batch 2 of a setup: (config path, work dir, overrides)."""
    from tests.conftest import TINY_CONFIG

    root = tmp_path_factory.mktemp("ddp")
    config = root / "tiny.yaml"
    config.write_text(TINY_CONFIG.format(base=REPO / "configs" / "shapes_resnet18.yaml", root=tiny_shapes))
    work_dir = root / "ddp"
    common = SETUPS[request.param]
    result = torchrun(
        2,
        ["--config", str(config), "--work-dir", str(work_dir), "--no-progress", *common, *DDP_OVERRIDES],
        cwd=root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return config, work_dir, common


def test_two_ranks_train_like_one_process_with_the_global_batch(
    ddp_run: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    config, work_dir, common = ddp_run
    single_cfg = load_config(config, [*common, "data.batch_size=4"])
    single = Trainer.from_config(single_cfg, tmp_path / "single", progress=False)
    single.fit()
    assert single.iteration == 3
    ddp_state = load_checkpoint(work_dir / "checkpoints" / "last.pth")
    assert ddp_state["iteration"] == 3 and ddp_state["world_size"] == 2 and ddp_state["global_batch_size"] == 4
    ours = single.model.state_dict()
    assert ours.keys() == ddp_state["model"].keys()
    assert any(k.startswith("head.ltrb.") for k in ours) == ("model.head.box=ltrb" in common)
    initial = Trainer.from_config(load_config(config, common), tmp_path / "init", progress=False).model.state_dict()
    moved = 0
    atol = LTRB_WEIGHT_ATOL if "model.head.box=ltrb" in common else WEIGHT_ATOL
    for key, value in ours.items():
        torch.testing.assert_close(ddp_state["model"][key], value, atol=atol, rtol=1e-4,
                                   msg=lambda message, name=key: f"{name}: {message}")
        moved += int(not torch.equal(value, initial[key]))
    assert moved > len(ours) // 2  # the comparison is not between two untrained models
    # linear scaling: lr 0.1 given for a batch of 8, global batch 4 -> 0.05; x0.1 once epoch 1 is reached
    train = [json.loads(line) for line in (work_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in train if r["type"] == "train"][-1] == pytest.approx(0.05 * 0.1)
    one = [json.loads(line) for line in (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()]
    terms = [key for key in ("heatmap", "size", "offset", "box") if key in train[0]]
    for ddp_step, single_step in zip([r for r in train if r["type"] == "train"],
                                     [r for r in one if r["type"] == "train"], strict=True):
        for key in terms:  # the all-reduced normalisers give the single process's loss at every step
            assert ddp_step[key] == pytest.approx(single_step[key], rel=1e-5, abs=1e-6), (ddp_step["iter"], key)
    assert single.optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * 0.1)


def test_sharded_evaluation_equals_single_process(ddp_run: tuple[Path, Path, list[str]], tmp_path: Path) -> None:
    config, work_dir, common = ddp_run
    checkpoint = work_dir / "checkpoints" / "last.pth"
    trainer = Trainer.from_config(load_config(config, common), tmp_path / "eval1", resume=checkpoint, progress=False)
    metrics = trainer.evaluate()
    assert metrics == json.loads((work_dir / "eval" / "metrics.json").read_text())
    single = json.loads((tmp_path / "eval1" / "eval" / "detections.json").read_text())
    sharded = json.loads((work_dir / "eval" / "detections.json").read_text())
    assert len(sharded) == 4 * 100 and sharded == single


def test_only_rank_zero_writes(ddp_run: tuple[Path, Path, list[str]]) -> None:
    _, work_dir, _ = ddp_run
    records = [json.loads(line) for line in (work_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records if r["type"] == "train"] == [1, 2, 3]  # one writer, no duplicates
    assert [p.name for p in (work_dir / "checkpoints").glob("*.pth")].count("last.pth") == 1


def split_batch(targets: dict[str, torch.Tensor], part: slice) -> dict[str, torch.Tensor]:
    return {key: value[part] for key, value in targets.items()}


@pytest.mark.parametrize("loss_type", ["penalty_reduced_focal", "ghm_c"])
def test_global_normaliser_makes_the_rank_mean_equal_the_full_batch_loss(loss_type: str) -> None:
    """Two simulated ranks: the mean of the rescaled per-rank terms (what DDP's gradient averaging
    sees) equals the terms of the whole batch, although the ranks hold 3 and 1 objects."""
    boxes = torch.tensor([[[2.0, 2.0, 8.0, 9.0], [10.0, 3.0, 14.0, 12.0], [1.0, 10.0, 6.0, 15.0]],
                          [[4.0, 4.0, 12.0, 12.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])
    valid = torch.tensor([[True, True, True], [True, False, False]])
    targets = render_targets(boxes, torch.tensor([[0, 1, 0], [1, 0, 0]]), valid, num_classes=2, output_size=(16, 16))
    generator = torch.Generator().manual_seed(0)
    outputs = {
        "heatmap": torch.randn(2, 2, 16, 16, generator=generator),
        "size": torch.randn(2, 2, 16, 16, generator=generator),
        "offset": torch.randn(2, 2, 16, 16, generator=generator),
    }
    full = build_criterion_of(loss_type)(outputs, targets)
    halves = [slice(0, 1), slice(1, 2)]
    local_counts = [build_criterion_of(loss_type).normaliser_counts(split_batch(targets, h)) for h in halves]
    total = local_counts[0] + local_counts[1]
    reduce_counts = None
    if loss_type == "ghm_c":  # GHM-C's histogram is global too
        counts = [bin_counts(split_batch(outputs, h), split_batch(targets, h)) for h in halves]
        reduce_counts = lambda _c: counts[0] + counts[1]  # noqa: E731 - the sum over both ranks
    ranks = []
    for half in halves:
        criterion = CenterNetCriterion(
            build_heatmap_loss(loss_type, reduce_counts=reduce_counts), size_weight=0.1,
            all_reduce_sum=lambda _local: total, world_size=2,  # the sum over both ranks
        )
        ranks.append(criterion(split_batch(outputs, half), split_batch(targets, half)))
    for key in ("heatmap", "size", "offset"):
        mean = (ranks[0][key] + ranks[1][key]) / 2
        assert mean.item() == pytest.approx(full[key].item(), rel=1e-5), key


def test_global_box_weight_makes_the_rank_mean_equal_the_full_batch_giou_loss() -> None:
    """The same with TTFNet's targets and GIoU box term: the box weights the ranks sum differ (3 vs 1 box)."""
    boxes = torch.tensor([[[8.0, 8.0, 32.0, 36.0], [40.0, 12.0, 56.0, 48.0], [4.0, 40.0, 24.0, 60.0]],
                          [[16.0, 16.0, 48.0, 48.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])
    valid = torch.tensor([[True, True, True], [True, False, False]])
    targets = render_ttf_targets(boxes, torch.tensor([[0, 1, 0], [1, 0, 0]]), valid, ignore=None, num_classes=2,
                                 output_size=(16, 16), down_ratio=4, alpha=0.54, beta=0.54, box_weight="log_area")
    generator = torch.Generator().manual_seed(0)
    outputs = {"heatmap": torch.randn(2, 2, 16, 16, generator=generator),
               "ltrb": torch.rand(2, 4, 16, 16, generator=generator) * 24}

    def criterion(**kwargs: object) -> CenterNetCriterion:
        return CenterNetCriterion(build_heatmap_loss("penalty_reduced_focal"),
                                  box_terms=LtrbGIoUTerms(weight=5.0, down_ratio=4), **kwargs)

    full = criterion()(outputs, targets)
    halves = [slice(0, 1), slice(1, 2)]
    total = sum(criterion().normaliser_counts(split_batch(targets, h)) for h in halves)
    ranks = [criterion(all_reduce_sum=lambda _local: total, world_size=2)(split_batch(outputs, h),
                                                                         split_batch(targets, h)) for h in halves]
    assert full["box"].item() > 0.1
    for key in ("heatmap", "box"):
        mean = (ranks[0][key] + ranks[1][key]) / 2
        assert mean.item() == pytest.approx(full[key].item(), rel=1e-5), key


def build_criterion_of(loss_type: str) -> CenterNetCriterion:
    return CenterNetCriterion(build_heatmap_loss(loss_type), size_weight=0.1)


def bin_counts(outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """GHM-C's per-bin counts of one rank (recorded by a throw-away forward)."""
    loss = build_heatmap_loss("ghm_c")
    loss(outputs["heatmap"], targets["heatmap"], targets["heatmap_mask"])
    return loss.last_bin_counts.clone()


def test_build_criterion_is_single_process_by_default(tiny_config: Callable[..., Path]) -> None:
    criterion = build_criterion(load_config(tiny_config()))
    assert criterion.all_reduce_sum is None and criterion.world_size == 1


def test_merged_shards_come_back_in_dataset_order_once_per_image(tiny_config: Callable[..., Path]) -> None:
    dataset = build_dataset(load_config(tiny_config()), "val")
    ids = dataset.image_ids  # 4 images; rank 0 held positions 0 and 2, rank 1 positions 1 and 3
    shard0 = [({"image_id": ids[i]}, i) for i in (0, 2)]
    shard1 = [({"image_id": ids[i]}, i) for i in (1, 3)] + [({"image_id": ids[1]}, 99)]  # a stand-in repeat
    merged = in_dataset_order(dataset, shard0 + shard1)  # type: ignore[arg-type]
    assert [(meta["image_id"], value) for meta, value in merged] == [(ids[i], i) for i in range(4)]


def test_every_named_val_set_is_sharded_and_gathered(tmp_path: Path, tiny_shapes: Path) -> None:
    from tests.conftest import TINY_CONFIG

    (tmp_path / "tiny.yaml").write_text(TINY_CONFIG.format(base=REPO / "configs" / "shapes_resnet18.yaml",
                                                           root=tiny_shapes))
    config = tmp_path / "sets.yaml"
    config.write_text(
        "_base_: tiny.yaml\ndata:\n  val:\n"
        f"    - {{name: held_out, type: coco, ann_file: {tiny_shapes}/annotations/instances_val.json, "
        f"img_dir: {tiny_shapes}/val}}\n"
        f"    - {{name: seen, type: coco, ann_file: {tiny_shapes}/annotations/instances_train.json, "
        f"img_dir: {tiny_shapes}/train}}\n"
    )
    work_dir = tmp_path / "ddp"
    result = torchrun(2, ["--config", str(config), "--work-dir", str(work_dir), "--no-progress", *COMMON,
                          *DDP_OVERRIDES], cwd=tmp_path)  # the same evaluation settings as the process below
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = work_dir / "checkpoints" / "last.pth"
    trainer = Trainer.from_config(load_config(config, COMMON), tmp_path / "one", resume=checkpoint, progress=False)
    metrics = trainer.evaluate()
    for name, images in (("held_out", 4), ("seen", 12)):
        sharded = json.loads((work_dir / "eval" / name / "detections.json").read_text())
        single = json.loads((tmp_path / "one" / "eval" / name / "detections.json").read_text())
        assert len(sharded) == images * 100 and sharded == single
        saved = json.loads((work_dir / "eval" / name / "metrics.json").read_text())
        assert metrics[f"{name}/AP"] == pytest.approx(saved["AP"], abs=1e-6)
