"""Speed benchmarks: our code against a reference, side by side in one process.

Absolute times on shared machines are noise, so every row times two callables on the same inputs,
interleaving their repetitions, and reports the ratio of their medians.

    python benchmarks/run.py [--quick] [--out benchmarks/results.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from centernet.losses import CenterNetCriterion, build_heatmap_loss
from centernet.models import build_centernet
from centernet.targets import render_targets

OUT_DEFAULT = Path(__file__).resolve().parent / "results.json"


@dataclass
class Row:
    """One benchmark row: ``ratio = ours_ms / reference_ms`` (medians)."""

    name: str
    ours: str
    reference: str
    ours_ms: float
    reference_ms: float
    ratio: float
    target: str


def interleaved_medians(
    ours: Callable[[], object], reference: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median milliseconds of each callable, run alternately ``repeats`` times after one warm-up each."""
    ours()
    reference()
    times: dict[str, list[float]] = {"ours": [], "reference": []}
    for _ in range(repeats):
        for name, fn in (("ours", ours), ("reference", reference)):
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000)
    return statistics.median(times["ours"]), statistics.median(times["reference"])


def training_step_factory(heatmap_loss: str, *, batch: int, size: int) -> Callable[[], object]:
    """A full training step (targets + forward + loss + backward + Adam) of the demo model with a heatmap loss."""
    torch.manual_seed(0)
    model = build_centernet(
        backbone="resnet18",
        backbone_weights=None,
        neck="deconv_lateral",
        neck_channels=(256, 256, 256),
        num_classes=5,
        head_conv=64,
        prior_prob=0.1,
    ).to(memory_format=torch.channels_last)
    params = {"ghm_c": {"bins": 10, "momentum": 0.75, "density": "ema"}}.get(heatmap_loss, {})
    criterion = CenterNetCriterion(build_heatmap_loss(heatmap_loss, **params))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    images = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    boxes = torch.rand(batch, 6, 2) * (size * 0.6)
    boxes = torch.cat([boxes, boxes + size * 0.3], dim=-1) / 4  # output grid
    labels = torch.randint(0, 5, (batch, 6))
    valid = torch.ones(batch, 6, dtype=torch.bool)

    def step() -> None:
        targets = render_targets(boxes, labels, valid, num_classes=5, output_size=(size // 4, size // 4))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = model(images)
        loss = torch.stack(list(criterion(outputs, targets).values())).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def bench_ghm_step(quick: bool) -> Row:
    batch, size, repeats = (8, 64, 3) if quick else (32, 128, 10)
    ours_ms, ref_ms = interleaved_medians(
        training_step_factory("ghm_c", batch=batch, size=size),
        training_step_factory("penalty_reduced_focal", batch=batch, size=size),
        repeats,
    )
    return Row(
        name=f"train step, heatmap loss (B={batch}, {size}px, demo model, bf16)",
        ours="ghm_c (ema)",
        reference="penalty_reduced_focal",
        ours_ms=ours_ms,
        reference_ms=ref_ms,
        ratio=ours_ms / ref_ms,
        target="<= 1.15",
    )


def markdown(rows: list[Row]) -> str:
    lines = ["| row | ours | reference | ours ms | reference ms | ratio | target |", "|---|---|---|---|---|---|---|"]
    lines += [
        f"| {r.name} | {r.ours} | {r.reference} | {r.ours_ms:.1f} | {r.reference_ms:.1f} | {r.ratio:.3f} | {r.target} |"
        for r in rows
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repetitions (CI smoke run)")
    parser.add_argument("--out", type=Path, default=OUT_DEFAULT, help="where to write the JSON results")
    args = parser.parse_args(argv)
    rows = [bench_ghm_step(args.quick)]
    table = markdown(rows)
    sys.stdout.write(table + "\n")
    machine = {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(), "torch": torch.__version__}
    payload = {"quick": args.quick, "machine": machine, "rows": [asdict(r) for r in rows]}
    args.out.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
