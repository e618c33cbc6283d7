"""Albumentations transforms named in the config, run on the uint8 image and its boxes before the warp.

``augment.albumentations`` lists transforms by albumentations class name with their keyword arguments
(see docs/augmentation.md). They are composed with box support: boxes in ``pascal_voc`` format (the
datasets' continuous ``[x1, y1, x2, y2]``, pixel ``i`` spanning ``[i, i + 1)``), clipped to the image,
and filtered by ``augment.albumentations_bbox`` (``min_visibility``, ``min_area``). The only label
field is each box's row index, so labels and ignore flags follow their box whatever is dropped or
reordered, and an ignore region stays an ignore region. A chain of colour transforms only leaves the
boxes exactly as they are (no clipping, no filtering).

Albumentations expects RGB; the loader reads BGR, so the chain converts on the way in and out.
Randomness: every call takes one draw of per-transform seeds from the sample's generator (seeded by
(seed, epoch, index)), so a sample is the same in any process or worker. Each transform gets its own
seed: albumentations' ``Compose.set_random_seed`` gives them all the same one, which would make e.g.
two ``p=0.5`` transforms fire together.
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

# Without this, importing albumentations checks for a newer release over the network (a 2 s wait offline).
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A
from albumentations.core.transforms_interface import BasicTransform, Transform3D

from centernet.config.schema import AugmentConfig

CONFIG_KEY = "augment.albumentations"
SEED_LIMIT = 2**32  # per-transform seeds are drawn from [0, 2**32)
BOX_INDEX_FIELD = "box_index"
#: Base classes that albumentations exports next to its transforms.
ABSTRACT_TRANSFORMS = frozenset({"BasicTransform", "DualTransform", "ImageOnlyTransform"})
#: Transforms that cannot run on the loader's uint8 image, and why.
UNSUPPORTED_TRANSFORMS = {
    "Normalize": "it turns the uint8 image into floats (normalisation is data.mean / data.std)",
    "ToFloat": "it turns the uint8 image into floats (the warp and colour jitter need uint8)",
    "FromFloat": "it expects a float image (the loader gives uint8)",
    "ToTensorV2": "it returns a tensor (the loader converts after the warp)",
    "Lambda": "it needs Python callables, which a config file cannot hold",
}
_NUM_CHANNELS = 3
_BOX_COORDS = 4


def supported_transform_names() -> list[str]:
    """Albumentations class names usable in ``augment.albumentations`` (single 2D transforms)."""
    return sorted(
        name
        for name, obj in vars(A).items()
        if isinstance(obj, type)
        and issubclass(obj, BasicTransform)
        and not issubclass(obj, Transform3D)
        and name not in ABSTRACT_TRANSFORMS
        and name not in UNSUPPORTED_TRANSFORMS
    )


def _did_you_mean(name: str, candidates: Sequence[str]) -> str:
    matches = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(m) for m in matches)}?)" if matches else ""


def _transform_class(spec: Any, where: str) -> tuple[type[BasicTransform], dict[str, Any]]:
    """The class named by one list entry and the entry's other keys (the keyword arguments)."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("type"), str):
        raise ValueError(f"{where}: expected a mapping with a 'type' naming an albumentations transform, got {spec!r}")
    kwargs = {key: value for key, value in spec.items() if key != "type"}
    name = spec["type"]
    if name in UNSUPPORTED_TRANSFORMS:
        raise ValueError(f"{where}.type: {name} cannot be used here: {UNSUPPORTED_TRANSFORMS[name]}")
    names = supported_transform_names()
    if name not in names:
        raise ValueError(f"{where}.type: {name!r} is not an albumentations transform{_did_you_mean(name, names)}")
    return getattr(A, name), kwargs


def _check_argument_names(cls: type, kwargs: Mapping[str, Any], where: str) -> None:
    """Reject keyword arguments the transform does not take (albumentations only warns and ignores them)."""
    parameters = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    valid = [name for name in parameters if name != "self"]
    for key in kwargs:
        if key not in valid:
            raise ValueError(
                f"{where}.{key}: not an argument of {cls.__name__}{_did_you_mean(key, valid)}; "
                f"its arguments: {', '.join(valid)}"
            )


def _argument_error(error: Exception, cls: type, kwargs: Mapping[str, Any], where: str) -> ValueError:
    """One line naming ``<where>.<argument>`` for albumentations' (pydantic) validation error."""
    cause = error.__cause__ or error.__context__
    details = cause.errors() if cause is not None and hasattr(cause, "errors") else []
    fields = [d for d in details if d.get("loc") and str(d["loc"][0]) in kwargs]
    if not fields:
        text = " ".join(str(error).split())
        return ValueError(f"{where} ({cls.__name__}): {text}")
    field = str(fields[0]["loc"][0])
    reasons = []
    for detail in fields:
        if str(detail["loc"][0]) != field:
            continue
        variant = ".".join(str(part) for part in detail["loc"][1:])
        reasons.append(f"as {variant}: {detail['msg']}" if variant else str(detail["msg"]))
    return ValueError(f"{where}.{field}: {kwargs[field]!r} is not valid for {cls.__name__} ({'; '.join(reasons)})")


def build_transform(spec: Any, where: str) -> BasicTransform:
    """One albumentations transform from ``{type: ClassName, arg: value, ...}``.

    Args:
        spec: the list entry.
        where: its config key (``augment.albumentations[i]``), named in the errors.

    Raises:
        ValueError: one line naming ``where`` (or ``where.<argument>``) and what was expected.
    """
    cls, kwargs = _transform_class(spec, where)
    _check_argument_names(cls, kwargs, where)
    try:
        transform = cls(**kwargs)
    except (ValueError, TypeError) as error:
        raise _argument_error(error, cls, kwargs, where) from None
    extra_inputs = sorted(set(transform.targets_as_params) - {"image"})
    if extra_inputs:
        raise ValueError(f"{where}.type: {cls.__name__} needs the extra input(s) {extra_inputs}, which the loader "
                         "does not provide")
    return transform


class AlbumentationsChain:
    """The ``augment.albumentations`` transforms, composed with box support (see the module docstring).

    Picklable for loader workers: only the config entries travel, the chain is rebuilt on arrival.
    """

    def __init__(
        self,
        specs: Sequence[Mapping[str, Any]],
        *,
        min_visibility: float = 0.0,
        min_area: float = 0.0,
        key: str = CONFIG_KEY,
    ) -> None:
        """Build the transforms.

        Args:
            specs: ``{type: ClassName, **kwargs}`` entries, applied in order.
            min_visibility: drop a box keeping less than this fraction of its area after a transform.
            min_area: drop a box smaller than this many pixels after a transform.
            key: config key of ``specs`` (named in errors).

        Raises:
            ValueError: one line naming ``key[i]`` (and the argument) for a bad entry or setting.
        """
        if not 0.0 <= min_visibility <= 1.0:
            raise ValueError(f"{key}_bbox.min_visibility: expected a fraction in [0, 1], got {min_visibility}")
        if min_area < 0:
            raise ValueError(f"{key}_bbox.min_area: expected pixels >= 0, got {min_area}")
        self.specs = [dict(spec) if isinstance(spec, Mapping) else spec for spec in specs]
        self.min_visibility = float(min_visibility)
        self.min_area = float(min_area)
        self.key = key
        self.transforms = [build_transform(spec, f"{key}[{i}]") for i, spec in enumerate(self.specs)]
        # colour-only chains leave the boxes alone (albumentations would still clip and filter them)
        self.moves_boxes = any("bboxes" in transform.targets for transform in self.transforms)
        bbox_params = A.BboxParams(
            format="pascal_voc",
            label_fields=[BOX_INDEX_FIELD],
            min_visibility=self.min_visibility,
            min_area=self.min_area,
            clip=True,  # boxes may stick out of the image (the datasets keep them); albumentations rejects those
            filter_invalid_bboxes=True,
        )
        self.compose = A.Compose(self.transforms, bbox_params=bbox_params if self.moves_boxes else None, seed=0)

    def __repr__(self) -> str:
        """The transforms and the box filter."""
        names = ", ".join(type(t).__name__ for t in self.transforms)
        return f"{type(self).__name__}([{names}], min_visibility={self.min_visibility}, min_area={self.min_area})"

    def __getstate__(self) -> dict[str, Any]:
        return {"specs": self.specs, "min_visibility": self.min_visibility, "min_area": self.min_area, "key": self.key}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["specs"], min_visibility=state["min_visibility"], min_area=state["min_area"], key=state["key"]
        )

    def _to_bgr(self, image: Any) -> np.ndarray:
        """The chain's RGB output as BGR, if it is still ``uint8 [H, W, 3]`` (else a one-line ValueError)."""
        if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3:
            if image.shape[2] == _NUM_CHANNELS:
                return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
        shape, dtype = getattr(image, "shape", None), getattr(image, "dtype", type(image).__name__)
        raise ValueError(
            f"{self.key}: the chain returned an image of shape {shape} and dtype {dtype}; expected uint8 [H, W, 3]"
        )

    def __call__(
        self, image_bgr: np.ndarray, boxes: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run the chain on one image and its boxes.

        Args:
            image_bgr: ``uint8 [H, W, 3]`` BGR pixels.
            boxes: ``float32 [N, 4]`` ``[x1, y1, x2, y2]`` in image pixels.
            rng: the sample's generator; one draw of ``len(transforms)`` seeds is taken from it.

        Returns:
            ``(image_bgr [H', W', 3] uint8, boxes float32 [K, 4], kept int64 [K])``: ``kept[k]`` is the
            input row of output box ``k`` (boxes may be dropped by the filter, never added).
        """
        for transform, seed in zip(self.transforms, rng.integers(0, SEED_LIMIT, size=len(self.transforms))):
            transform.set_random_seed(int(seed))
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, _BOX_COORDS)
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        rows = np.arange(len(boxes), dtype=np.int64)
        if not self.moves_boxes:
            return self._to_bgr(self.compose(image=rgb)["image"]), boxes, rows
        out = self.compose(image=rgb, bboxes=boxes, **{BOX_INDEX_FIELD: rows})
        out_boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, _BOX_COORDS)
        kept = np.asarray(out[BOX_INDEX_FIELD], dtype=np.int64).reshape(-1)
        return self._to_bgr(out["image"]), out_boxes, kept


def albumentations_from_config(augment: AugmentConfig) -> AlbumentationsChain | None:
    """The chain of ``augment.albumentations`` (with ``augment.albumentations_bbox``), or None when empty."""
    if not augment.albumentations:
        return None
    return AlbumentationsChain(
        augment.albumentations,
        min_visibility=augment.albumentations_bbox.min_visibility,
        min_area=augment.albumentations_bbox.min_area,
    )
