"""The Markdown form of the device-check report: one table per section."""

from __future__ import annotations

from typing import Any

from benchmarks.gpu_check.common import PAPER_FPS

# Figures shown in the tables, in this order (others stay in the JSON).
SHOWN = (
    "images_per_s", "paper_fps_titan_xp", "ms_per_batch", "ms_fwd_bwd", "images_per_s_real_loader",
    "images_per_s_from_memory", "loader_over_memory", "loader_workers", "first_call_s", "peak_memory_mib",
    "first_losses", "last_losses", "max_abs_error", "tolerance", "process_group", "saved_epoch", "seconds",
)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return "-" if value is None else str(value)


def markdown(payload: dict[str, Any]) -> str:
    """The report as Markdown (environment, then a table per section)."""
    env = payload["environment"]
    lines = [
        "# Device check" + (" (--quick)" if payload["quick"] else ""),
        "",
        f"{payload['created_utc']}; " + ", ".join(f"{key}: {value}" for key, value in env.items()),
        "",
        f"Failed checks: {payload['failed']}. Section times (s): "
        + ", ".join(f"{name} {seconds}" for name, seconds in payload["seconds"].items()),
    ]
    sections: dict[str, list[dict[str, Any]]] = {}
    for check in payload["checks"]:
        sections.setdefault(check["section"], []).append(check)
    for section, checks in sections.items():
        keys = [key for key in SHOWN if any(key in check["figures"] for check in checks)]
        lines += ["", f"## {section}", "", "| check | status | " + " | ".join(keys) + " | note |",
                  "|---" * (len(keys) + 3) + "|"]
        for check in checks:
            cells = [_value(check["figures"].get(key)) for key in keys]
            note = check["reason"].replace("|", "/").replace("\n", " ")
            lines.append(f"| {check['name']} | {check['status']} | " + " | ".join(cells) + f" | {note} |")
        if section == "inference speed":
            lines += ["", "paper_fps_titan_xp: the CenterNet paper's figures (" + ", ".join(
                f"{name} {fps:g} FPS" for name, fps in PAPER_FPS.items()
            ) + " on a Titan Xp, batch 1), not measured here."]
    return "\n".join(lines) + "\n"
