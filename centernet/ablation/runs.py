"""Ablation studies: where each config x seed run lives, how far it got and what it reported.

A study lives in one folder, ``<work_dir>/<config stem>/seed<seed>/`` per run (an ordinary training
work dir plus ``run_info.json``: the wall time of the run, summed over interrupted sessions). This
module reads those folders back; :mod:`centernet.ablation.report` turns the results into tables and
plots. Neither trains: ``tools/ablate.py`` does.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from centernet.config.loader import read_yaml_mapping
from centernet.engine.checkpoint import CheckpointStore, load_checkpoint
from centernet.engine.run_dir import EVAL_DIR, METRICS_NAME

logger = logging.getLogger(__name__)

RUN_INFO_FILE = "run_info.json"
CONFIG_FILE = "config.yaml"
LAST_CHECKPOINT = Path("checkpoints") / "last.pth"
JSONL_FILE = "metrics.jsonl"
FAILED_FILE = "trial_failed.json"  # a tuning trial that diverged (centernet.ablation.tuning)
RUN_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # final metrics read from each run
CURVE_METRIC = "AP"  # validation metric recorded per epoch


@dataclass(frozen=True)
class RunSpec:
    """Where one run of a study lives and what it is.

    Args:
        name: the config name (file stem); one table row per name.
        loss_type: ``loss.heatmap.type`` of the run's config.
        seed: ``runtime.seed`` of the run.
        run_dir: the run's work dir.
        val_set: the named validation set whose metrics the study reports (None: the config's one unnamed set).
    """

    name: str
    loss_type: str
    seed: int
    run_dir: Path
    val_set: str | None = None

    @property
    def metrics_file(self) -> Path:
        """The run's final metrics: ``eval/metrics.json`` or ``eval/<val_set>/metrics.json``."""
        folder = self.run_dir / EVAL_DIR
        return (folder / self.val_set if self.val_set else folder) / METRICS_NAME


@dataclass
class RunResult:
    """What one finished run reports.

    Attributes:
        metrics: final COCO metrics (fractions in [0, 1]; ``None`` where COCO left a metric undefined).
        final_loss: ``loss`` of the last ``train`` record of ``metrics.jsonl`` (``None`` without one).
        train_time_s: wall time of the run from ``run_info.json`` (``None`` without that file).
        val_curve: validation ``AP`` per epoch (the last record of an epoch wins, e.g. after a resume).
        bin_counts: GHM losses: the ``ghm_bin_counts`` of each epoch's last ``train`` record.
        switch_epoch: ``batch_then_epoch`` GHM: the last ``ghm_switch_epoch`` logged (``None``: none).
    """

    spec: RunSpec
    metrics: dict[str, float | None]
    final_loss: float | None
    train_time_s: float | None
    val_curve: dict[int, float | None] = field(default_factory=dict)
    bin_counts: dict[int, list[int]] = field(default_factory=dict)
    switch_epoch: int | None = None


# ----------------------------------------------------------------------------- run state
RUNTIME_ONLY_KEYS = ("runtime.device", "runtime.threads", "runtime.log_interval", "data.workers")
"""Config keys that may change when a run is resumed: they do not change what is trained."""


@dataclass(frozen=True)
class RunStatus:
    """How far a run got.

    Attributes:
        completed_epochs: ``epoch`` of ``checkpoints/last.pth`` (0 without one).
        planned_epochs: the checkpoint's training plan (``max_epochs``; ``solver.epochs`` without one).
        done: all planned epochs completed and the final metrics written (:attr:`RunSpec.metrics_file`).
        config: the config stored in ``last.pth`` (a kept record: its ``config.yaml``; ``None`` without one).
        config_source: the file ``config`` was read from.
    """

    completed_epochs: int
    done: bool
    config: dict[str, Any] | None = None
    planned_epochs: int | None = None
    config_source: Path | None = None


def _newest_readable(last: Path) -> tuple[dict[str, Any], Path]:
    """The state and path of ``last`` or, when it is truncated or corrupt, of the newest readable ``iter_*.pth``
    beside it (the resume falls back the same way).

    Raises:
        ValueError: no checkpoint of the folder is readable (the newest one's error).
    """
    candidates = CheckpointStore(last.parent, keep=1).candidates()
    first_error: ValueError | None = None
    for path in candidates:
        try:
            return load_checkpoint(path), path
        except ValueError as error:
            logger.warning("%s; trying an older checkpoint", error)
            first_error = first_error or error
    assert first_error is not None
    raise first_error


def run_status(spec: RunSpec, epochs: int) -> RunStatus:
    """Inspect a run folder before (re)starting it.

    A run is done when its final metrics file exists and ``checkpoints/last.pth`` completed the epochs of
    its training plan (the checkpoint's ``max_epochs``, which ``solver.min_iters`` can make larger than
    ``solver.epochs``; ``epochs``, the config's ``solver.epochs``, for checkpoints without it).

    A finished run whose ``checkpoints/`` folder was removed (a *kept record*, see :func:`export_record`)
    is done too: its ``run_info.json`` says it finished and its final metrics exist; its epochs are those
    of its last ``train`` record in ``metrics.jsonl`` and its config is its ``config.yaml``.

    Raises:
        ValueError: the checkpoint is unreadable, has no integer ``epoch`` or is past its planned epochs.
    """
    last = spec.run_dir / LAST_CHECKPOINT
    if not last.is_file():
        return _kept_record_status(spec)
    state, last = _newest_readable(last)
    completed, planned = state.get("epoch"), state.get("max_epochs", epochs)
    if not isinstance(completed, int) or isinstance(completed, bool):
        raise ValueError(f"{last}: expected an integer 'epoch' entry, got {completed!r}")
    if not isinstance(planned, int) or isinstance(planned, bool):
        raise ValueError(f"{last}: expected an integer 'max_epochs' entry, got {planned!r}")
    if completed > planned:
        raise ValueError(f"{last} has {completed} completed epochs but plans {planned}; use another --work-dir")
    config = state.get("config")
    return RunStatus(
        completed_epochs=completed,
        done=completed == planned and spec.metrics_file.is_file(),
        config=config if isinstance(config, dict) else None,
        planned_epochs=planned,
        config_source=last,
    )


def _kept_record_status(spec: RunSpec) -> RunStatus:
    """A run folder without ``last.pth``: done when it is the kept record of a finished run, else not started."""
    if read_run_info(spec.run_dir).get("finished") is not True or not spec.metrics_file.is_file():
        return RunStatus(completed_epochs=0, done=False)
    jsonl_path = spec.run_dir / JSONL_FILE
    epochs = max((record["epoch"] for _, record in _read_jsonl(jsonl_path)
                  if record.get("type") == "train" and isinstance(record.get("epoch"), int)), default=0)
    config_path = spec.run_dir / CONFIG_FILE
    config = read_yaml_mapping(config_path) if config_path.is_file() else None  # ConfigError names the file
    return RunStatus(completed_epochs=epochs, done=True, config=config, planned_epochs=epochs,
                     config_source=config_path if config is not None else None)


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any], ignore: Iterable[str] = ()) -> list[str]:
    """Dotted keys whose values differ between two nested config dicts (``ignore``: dotted keys to skip)."""
    ignored = set(ignore)
    differences: list[str] = []

    def walk(a: Any, b: Any, key: str) -> None:
        if key in ignored:
            return
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for name in sorted(set(a) | set(b)):
                walk(a.get(name), b.get(name), f"{key}.{name}" if key else str(name))
        elif a != b:
            differences.append(key)

    walk(saved, current, "")
    return differences


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """The run's ``run_info.json`` as a dict (empty when there is none)."""
    path = run_dir / RUN_INFO_FILE
    if not path.is_file():
        return {}
    return read_json(path, expected=dict)


def record_run_time(run_dir: Path, seconds: float, *, finished: bool, resumed: bool) -> dict[str, Any]:
    """Add one session's wall time to ``run_info.json`` (a fresh run starts from zero) and return the info.

    Args:
        run_dir: the run folder.
        seconds: wall time of this session (build + train + evaluate).
        finished: the run completed all its epochs in this session.
        resumed: this session continued an earlier one, whose time is kept and added to.
    """
    info = read_run_info(run_dir) if resumed else {}
    info = {
        "train_time_s": float(info.get("train_time_s", 0.0)) + seconds,
        "sessions": int(info.get("sessions", 0)) + 1,
        "finished": finished,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return info


# ------------------------------------------------------------------------------ records
def record_files(run_dir: Path) -> list[Path]:
    """The files of a run that its report reads, relative to ``run_dir``: ``config.yaml``, ``run_info.json``,
    ``metrics.jsonl``, a failed tuning trial's ``trial_failed.json`` and every ``eval/**/metrics.json`` (no
    checkpoints, images or detections)."""
    names = [Path(name) for name in (CONFIG_FILE, RUN_INFO_FILE, JSONL_FILE, FAILED_FILE) if (run_dir / name).is_file()]
    evaluations = sorted(path.relative_to(run_dir) for path in (run_dir / EVAL_DIR).rglob(METRICS_NAME))
    return names + evaluations


def export_record(spec: RunSpec, destination: Path, relative: Path | None = None) -> int:
    """Copy a finished run's :func:`record_files` to ``destination/relative`` (default ``<name>/seed<seed>``,
    a tuning trial's ``<name>/tune/<point>/seed<seed>``); the number copied.

    The copy is a *kept record*: a study folder holding it counts the run as done (see :func:`run_status`)
    and reports it, so a study can be kept, shared or continued elsewhere without its checkpoints.
    Files already there with the same content are left alone.

    Raises:
        FileExistsError: a file of the record is already there with other content (nothing is replaced).
    """
    target = destination / (relative if relative is not None else Path(spec.name) / f"seed{spec.seed}")
    files = record_files(spec.run_dir)
    for relative in files:
        existing = target / relative
        if existing.is_file() and existing.read_bytes() != (spec.run_dir / relative).read_bytes():
            raise FileExistsError(f"{existing} already exists with other content than {spec.run_dir / relative}; "
                                  "export into another folder or remove it")
    copied = 0
    for relative in files:
        if not (target / relative).is_file():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(spec.run_dir / relative, target / relative)
            copied += 1
    return copied


# --------------------------------------------------------------------------- collecting
def collect_run(spec: RunSpec) -> RunResult:
    """Read a finished run's final metrics, last training loss, validation curve, GHM histograms and wall time.

    Raises:
        FileNotFoundError: the run has no ``eval/metrics.json``.
        ValueError: a file is not valid JSON (the message names the file and line).
    """
    metrics_path = spec.metrics_file
    if not metrics_path.is_file():
        raise FileNotFoundError(f"run {spec.run_dir} has no {metrics_path.relative_to(spec.run_dir)} (did it finish?)")
    raw = read_json(metrics_path, expected=dict)
    metrics = {name: _optional_float(raw.get(name), f"{metrics_path}: {name}") for name in RUN_METRICS}

    final_loss: float | None = None
    curve: dict[int, float | None] = {}
    bin_counts: dict[int, list[int]] = {}
    switch_epoch: int | None = None
    jsonl_path = spec.run_dir / JSONL_FILE
    for number, record in _read_jsonl(jsonl_path):
        where = f"{jsonl_path}:{number}"
        if record.get("type") == "train":
            counts, switch = record.get("ghm_bin_counts"), record.get("ghm_switch_epoch")
            if isinstance(record.get("epoch"), int) and isinstance(counts, list):
                bin_counts[record["epoch"]] = [int(c) for c in counts]
            if isinstance(switch, int):
                switch_epoch = switch
        if record.get("type") == "train" and "loss" in record:
            final_loss = _optional_float(record["loss"], f"{where}: loss")
        elif (record.get("type") == "val" and isinstance(record.get("epoch"), int)
              and record.get("set") == spec.val_set):
            curve[record["epoch"]] = _optional_float(record.get(CURVE_METRIC), f"{where}: {CURVE_METRIC}")
    time_s = _optional_float(read_run_info(spec.run_dir).get("train_time_s"), f"{spec.run_dir / RUN_INFO_FILE}")
    return RunResult(spec, metrics, final_loss, time_s, dict(sorted(curve.items())), dict(sorted(bin_counts.items())),
                     switch_epoch)


def _optional_float(value: Any, where: str) -> float | None:
    """``value`` as a float (``None`` stays ``None``); ``where`` names the file and key in errors."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"{where}: expected a number or null, got {value!r}")


def read_json(path: Path, *, expected: type) -> Any:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, expected):
        raise ValueError(f"{path}: expected a JSON {expected.__name__}, got {type(data).__name__}")
    return data


def _read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """The ``(line number, record)`` pairs of a ``metrics.jsonl``.

    A missing file gives no records; a line that is not a JSON object (e.g. cut short when a run was
    killed mid-write) is skipped. Both with a warning: the rest of the study still gets reported.
    """
    if not path.is_file():
        logger.warning("%s is missing: no final loss or validation curve for this run", path)
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append((number, record))
        else:
            logger.warning("%s:%d is not a JSON object; skipped", path, number)
    return records
