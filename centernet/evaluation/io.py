"""Reading and writing evaluation outputs (``metrics.json`` and ``detections.json``).

Both files are written atomically: the JSON goes to a temporary file in the target directory, is
flushed and fsync'ed, then moved over the final name with ``os.replace``, so a reader never sees a
half-written file and an interrupted run leaves the previous file intact.

``metrics.json`` is always valid JSON: undefined metrics (NaN, or ``None`` from the evaluators, e.g.
the AP of a category without ground truth) are written as ``null``. Its values are rounded to
:data:`METRICS_DECIMALS` decimals, so evaluators that agree up to float rounding (pycocotools and
faster-coco-eval sum precisions in different orders) write identical files.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from centernet.utils.output_dirs import apply_default_mode

logger = logging.getLogger(__name__)

METRICS_FILENAME = "metrics.json"
DETECTIONS_FILENAME = "detections.json"
REQUIRED_DETECTION_KEYS = ("image_id", "category_id", "bbox", "score")
LOOSE_REQUIRED_KEYS = ("bbox", "score")  # plus an image (id or file_name) and a class (id, name or label)
BBOX_LENGTH = 4  # COCO [x, y, w, h]
METRICS_JSON_INDENT = 2
METRICS_DECIMALS = 6  # metrics are fractions; 1e-6 is far below any meaningful difference


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_finite_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


def _record_problem(record: object, ids_required: bool = True) -> str | None:
    """Return a short description of what is wrong with one detection record, or None if it is valid.

    With ``ids_required=False`` the image may be named by ``file_name`` or a string ``image_id`` and the
    class by ``category_name`` or ``label`` instead (see :func:`load_detections`).
    """
    required = REQUIRED_DETECTION_KEYS if ids_required else LOOSE_REQUIRED_KEYS
    if not isinstance(record, Mapping):
        return f"expected an object with keys {list(required)}, got {type(record).__name__}"
    missing = [key for key in required if key not in record]
    if missing:
        return f"missing key(s) {missing} (required: {list(required)})"
    problem = _id_problem(record) if ids_required else _loose_id_problem(record)
    if problem is not None:
        return problem
    bbox = record["bbox"]
    if (
        not isinstance(bbox, Sequence)
        or isinstance(bbox, str)
        or len(bbox) != BBOX_LENGTH
        or not all(_is_finite_number(v) for v in bbox)
    ):
        return f"'bbox' must be {BBOX_LENGTH} finite numbers [x, y, w, h], got {bbox!r}"
    if not _is_finite_number(record["score"]):
        return f"'score' must be a finite number, got {record['score']!r}"
    return None


def _id_problem(record: Mapping[str, Any]) -> str | None:
    for key in ("image_id", "category_id"):
        if not _is_int(record[key]):
            return f"'{key}' must be an integer, got {record[key]!r}"
    return None


def _loose_id_problem(record: Mapping[str, Any]) -> str | None:
    image = record.get("image_id", record.get("file_name"))
    if not (_is_int(image) or (isinstance(image, str) and image)):
        return f"needs an integer or string 'image_id', or a 'file_name' (got {image!r})"
    if not any(key in record for key in ("category_id", "category_name", "label")):
        return "needs 'category_id' (integer), 'category_name' or 'label' (class index)"
    return None


def validate_detection_records(records: object, source: str, *, ids_required: bool = True) -> list[dict[str, Any]]:
    """Check that ``records`` is a list of COCO-results detection records.

    Args:
        records: The decoded JSON value (or an in-memory list) to check. Every element must be a
            mapping with ``image_id`` (int), ``category_id`` (int), ``bbox`` (4 finite numbers,
            ``[x, y, w, h]`` in image pixels) and ``score`` (finite number); other keys are kept.
        source: Where the records come from (a file path or a name), used in error messages.
        ids_required: False also accepts records naming the image by ``file_name`` or a string
            ``image_id`` and the class by ``category_name`` or ``label`` (resolved against a dataset by
            :func:`centernet.inference.records.resolve_records`).

    Returns:
        The same records, typed as a list of dicts.

    Raises:
        ValueError: ``"<source>: ..."`` naming the index of the first bad record and what was expected.
    """
    if not isinstance(records, list):
        raise ValueError(
            f"{source}: expected a JSON list of detection records, got {type(records).__name__}"
        )
    for index, record in enumerate(records):
        problem = _record_problem(record, ids_required)
        if problem is not None:
            raise ValueError(f"{source}: detection record {index}: {problem}")
    return records


def _json_safe(value: Any, decimals: int | None = None) -> Any:
    """Convert numpy scalars/arrays to Python values and non-finite floats to None (JSON null).

    Args:
        value: a JSON-like structure (mappings, sequences, numbers, strings, numpy values).
        decimals: round every non-integer number to this many decimals (None: keep it exact).
    """
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item, decimals) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item, decimals) for item in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy scalar or array
        return _json_safe(value.tolist(), decimals)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        as_float = float(value)
        if not math.isfinite(as_float):
            return None
        return as_float if decimals is None else round(as_float, decimals)
    return value


def _fsync_directory(directory: Path) -> None:
    """Persist a rename in ``directory`` (POSIX only; a no-op where directories cannot be opened)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file in the same directory, fsync, ``os.replace``).

    Args:
        path: Destination file; its parent directory must exist.
        text: The full file content (UTF-8).
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        apply_default_mode(Path(tmp_name))
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def write_eval_outputs(out_dir: Path, metrics: Mapping[str, Any], detections: list[dict[str, Any]]) -> None:
    """Write ``metrics.json`` and ``detections.json`` into ``out_dir`` atomically.

    Args:
        out_dir: Output directory; created (with parents) if missing.
        metrics: The metrics dict (e.g. from ``evaluate_coco``): ``{"metric": "coco", "AP", ...,
            "per_class": {name: AP}}``. NaN and ``None`` values are written as ``null``; numbers are
            rounded to :data:`METRICS_DECIMALS` decimals.
        detections: COCO-results records ``{"image_id", "file_name", "category_id", "category_name",
            "bbox": [x, y, w, h], "score"}`` in original-image pixels (validated before writing).

    Raises:
        ValueError: A detection record is malformed (names its index).
    """
    out_dir = Path(out_dir)
    validate_detection_records(detections, f"{out_dir / DETECTIONS_FILENAME} (being written)")
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_text = json.dumps(_json_safe(metrics, METRICS_DECIMALS), indent=METRICS_JSON_INDENT, allow_nan=False) + "\n"
    detections_text = json.dumps(_json_safe(detections), separators=(",", ":"), allow_nan=False) + "\n"
    atomic_write_text(out_dir / METRICS_FILENAME, metrics_text)
    atomic_write_text(out_dir / DETECTIONS_FILENAME, detections_text)
    logger.info("wrote %s and %s (%d detections) to %s", METRICS_FILENAME, DETECTIONS_FILENAME,
                len(detections), out_dir)


def load_detections(path: str | os.PathLike[str], *, ids_required: bool = True) -> list[dict[str, Any]]:
    """Read a ``detections.json`` file (COCO results format) and validate its structure.

    Args:
        path: The JSON file: a list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score", ...}``.
        ids_required: see :func:`validate_detection_records`.

    Returns:
        The list of detection records as stored (extra keys such as ``file_name`` kept).

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: One line naming the file: not valid JSON (with line/column), not a list, or the
            index of the first record that lacks a key or has a malformed value.
    """
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        try:
            records = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{path}: not valid JSON ({error.msg} at line {error.lineno} column {error.colno}); "
                "expected a list of COCO detection records"
            ) from error
        except UnicodeDecodeError as error:
            raise ValueError(f"{path}: not UTF-8 text ({error.reason}); expected a JSON list") from error
    return validate_detection_records(records, str(path), ids_required=ids_required)
