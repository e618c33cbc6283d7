"""Rebuilding a trained detector from a checkpoint: its config, class names and weights.

One path for every consumer (``tools/eval.py``, ``tools/export.py``, :class:`~centernet.inference.predictor.Detector`):
:class:`TrainedCheckpoint` reads the file once; :func:`load_trained_model` builds the model the config
describes (never fetching pretrained weights: the checkpoint replaces every weight) and loads the weights,
or explains in one line how the checkpoint and the config differ.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from centernet.config import Config, apply_overrides, config_to_dict
from centernet.engine.checkpoint import load_checkpoint, model_state_from_checkpoint
from centernet.models.build import build_model

MAX_LISTED = 2  # keys named per kind of difference


@dataclass
class TrainedCheckpoint:
    """A checkpoint written by the trainer, read once.

    Attributes:
        path: the file.
        state: its entries (``model``, optionally ``ema``, ``config``, ``class_names``,
            ``label_to_category_id``, ``epoch``).
    """

    path: Path
    state: dict[str, Any]

    @classmethod
    def read(cls, path: str | Path) -> TrainedCheckpoint:
        """Read ``path`` on the CPU (``weights_only``). Raises FileNotFoundError / ValueError naming it."""
        return cls(Path(path), load_checkpoint(path, map_location="cpu"))

    @property
    def stored_config(self) -> dict[str, Any] | None:
        """The config dict saved in the checkpoint, or None."""
        raw = self.state.get("config")
        return raw if isinstance(raw, dict) else None

    def config(self, overrides: Iterable[str] = ()) -> Config:
        """The stored config, validated, with command-line ``overrides`` applied.

        Raises:
            ValueError: the checkpoint holds no config (pass the experiment's ``--config``).
        """
        raw = self.stored_config
        if raw is None:
            raise ValueError(
                f"checkpoint {self.path} has no 'config' entry (keys: {sorted(self.state)}); "
                "pass the experiment config (--config)"
            )
        return apply_overrides(raw, overrides, source=f"{self.path} ['config']")

    @property
    def class_names(self) -> list[str] | None:
        """The class names saved in the checkpoint (None when absent or not a list of strings)."""
        names = self.state.get("class_names")
        if isinstance(names, list | tuple) and names and all(isinstance(n, str) for n in names):
            return list(names)
        return None

    @property
    def category_ids(self) -> list[int] | None:
        """The dataset category id of each class (``label_to_category_id``), or None."""
        ids = self.state.get("label_to_category_id")
        return [int(i) for i in ids] if isinstance(ids, list | tuple) else None

    @property
    def epoch(self) -> int | None:
        """Completed training epochs when the checkpoint was written, or None."""
        epoch = self.state.get("epoch")
        return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None


@dataclass
class TrainedModel:
    """A model with its trained weights, in eval mode on its device, and what describes it."""

    model: nn.Module
    config: Config
    class_names: list[str]
    checkpoint: TrainedCheckpoint

    @property
    def category_ids(self) -> list[int] | None:
        """The dataset category id of each class, when the checkpoint stores them."""
        return self.checkpoint.category_ids


def load_trained_model(
    checkpoint: str | Path | TrainedCheckpoint,
    config: Config | None = None,
    *,
    device: str | torch.device = "cpu",
    class_names: Sequence[str] | None = None,
) -> TrainedModel:
    """Build the model of ``config`` (default: the config stored in the checkpoint) and load its weights.

    Args:
        checkpoint: a ``.pth`` written by the trainer, or one already read.
        config: replaces the stored config entirely.
        device: where the model goes.
        class_names: the classes the caller expects (e.g. of the val set): used when the checkpoint
            stores none, and must equal the stored ones otherwise.

    Raises:
        FileNotFoundError: no checkpoint file.
        ValueError: corrupt checkpoint, no config, no class names, other class names than expected, or
            weights that do not fit the model (the message names the first differing keys and shapes).
    """
    trained = checkpoint if isinstance(checkpoint, TrainedCheckpoint) else TrainedCheckpoint.read(checkpoint)
    cfg = config if config is not None else trained.config()
    names = _class_names(trained, class_names)
    model_cfg = dataclasses.replace(
        cfg.model, backbone=dataclasses.replace(cfg.model.backbone, weights=None), init_checkpoint=None
    )
    model = build_model(dataclasses.replace(cfg, model=model_cfg), len(names))
    weights = model_state_from_checkpoint(trained.state, trained.path)
    problem = weight_differences(model.state_dict(), weights)
    if problem:
        raise ValueError(f"checkpoint {trained.path} does not fit the model: {describe_models(trained, cfg, names)}; "
                         f"{problem}")
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise ValueError(f"checkpoint {trained.path} does not fit the model: {str(error).splitlines()[0]}") from error
    return TrainedModel(model.to(device).eval(), cfg, names, trained)


def _class_names(trained: TrainedCheckpoint, expected: Sequence[str] | None) -> list[str]:
    stored = trained.class_names
    if stored is None and expected is None:
        raise ValueError(
            f"checkpoint {trained.path} has no usable 'class_names' entry (expected a non-empty list of strings, "
            f"keys: {sorted(trained.state)})"
        )
    if stored is not None and expected is not None and list(expected) != stored:
        raise ValueError(
            f"checkpoint {trained.path} was trained on classes {stored}, but the data here has {list(expected)}"
        )
    return list(stored if stored is not None else expected or [])


def describe_models(trained: TrainedCheckpoint, cfg: Config, class_names: Sequence[str]) -> str:
    """``checkpoint: <backbone>+<neck>, N classes; config: ...`` (the stored config's model next to ``cfg``'s)."""
    ours = f"{_architecture(config_to_dict(cfg))}, {_classes(len(class_names))}"
    stored = trained.stored_config
    if stored is None:
        return f"the config builds {ours} (the checkpoint stores no config)"
    theirs = f"{_architecture(stored)}, {_classes(len(trained.class_names or []))}"
    return f"the checkpoint holds {theirs}, the config builds {ours}"


def _classes(count: int) -> str:
    return f"{count} class" if count == 1 else f"{count} classes"


def _architecture(config: Mapping[str, Any]) -> str:
    model = config.get("model", {})
    backbone, neck, head = model.get("backbone", {}), model.get("neck", {}), model.get("head", {})
    return (f"{backbone.get('type')}+{neck.get('type')} (neck channels {neck.get('channels')}, "
            f"head_conv {head.get('head_conv')})")


def weight_differences(expected: Mapping[str, torch.Tensor], weights: Mapping[str, Any]) -> str:
    """The first keys missing from ``weights``, unexpected in it, or of another shape; ``""`` when they fit."""
    missing = [key for key in expected if key not in weights]
    unexpected = [key for key in weights if key not in expected]
    reshaped = [
        f"{key} {_shape(weights[key])} in the checkpoint, {list(expected[key].shape)} in the model"
        for key in expected
        if key in weights and _shape(weights[key]) != list(expected[key].shape)
    ]
    parts = [
        f"{len(found)} {kind} (first: {', '.join(found[:MAX_LISTED])})"
        for kind, found in (("missing keys", missing), ("unexpected keys", unexpected), ("shapes differ", reshaped))
        if found
    ]
    return "; ".join(parts)


def _shape(value: Any) -> list[int] | None:
    return list(value.shape) if isinstance(value, torch.Tensor) else None
