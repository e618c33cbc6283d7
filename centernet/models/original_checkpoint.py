"""Load a checkpoint of the original CenterNet code (its model zoo ``.pth`` files) into a :class:`CenterNet`.

The original saves ``{"epoch": int, "state_dict": {key: Tensor}}`` (keys with a ``module.`` prefix when
trained with ``DataParallel``). Its keys map one to one onto ours:

==============================================  ==============================================
original                                        ours
==============================================  ==============================================
``conv1.*``, ``bn1.*``, ``layer1-4.*``           ``backbone.<same>`` (ResNet trunk)
``deconv_layers.<i>.*``                         ``neck.layers.<i>.*`` (``deconv`` / ``dcn_deconv``)
``base.*``                                      ``backbone.*`` (DLA-34 trunk)
``dla_up.*`` / ``ida_up.*``                     ``neck.dla_up.*`` / ``neck.ida_up.*`` (``ida_up``)
``pre.*``, ``kps.*``, ``cnvs(_).*``, ``inters(_).*``  ``backbone.<same>`` (Hourglass-104 trunk)
``hm.*`` / ``wh.*`` / ``reg.*``                 ``head.heatmap.*`` / ``head.size.*`` / ``head.offset.*``
``hm.<s>.0.conv.*`` / ``hm.<s>.1.*``            ``head.<s>.heatmap.0.*`` / ``head.<s>.heatmap.2.*`` (stack s)
==============================================  ==============================================

Covered architectures (config settings in :data:`ARCHITECTURE_SETTINGS`): ``res_18``/``res_101``
(``resnet18``/``resnet101`` + ``deconv``, neck channels 256, 256, 256, head_conv 64),
``resdcn_18``/``resdcn_101`` (+ ``dcn_deconv``, neck channels 256, 128, 64, head_conv 64), ``dla_34``
(``dla34`` + ``ida_up``, neck channels 64, 128, 256, 512, head_conv 256) and ``hourglass``
(``hourglass104`` + ``identity``, head_conv 256, one head per stack).

Fine-tuning to another dataset: when the file's heatmap has a different class count than the model, the
class-dependent tensors (the final conv weight and bias of every heatmap branch) are skipped with a
warning and keep the model's initialisation; everything else, including the heatmap's hidden 3x3 conv, is
loaded (as the original's ``load_model`` does).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from centernet.models.backbones.resnet import read_state_dict_file
from centernet.models.detector import CenterNet
from centernet.models.necks import DcnDeconvNeck

logger = logging.getLogger(__name__)

ORIGINAL_TO_OURS: tuple[tuple[str, str], ...] = (
    ("conv1.", "backbone.conv1."),
    ("bn1.", "backbone.bn1."),
    ("layer1.", "backbone.layer1."),
    ("layer2.", "backbone.layer2."),
    ("layer3.", "backbone.layer3."),
    ("layer4.", "backbone.layer4."),
    ("deconv_layers.", "neck.layers."),
    ("base.", "backbone."),
    ("dla_up.", "neck.dla_up."),
    ("ida_up.", "neck.ida_up."),
    ("pre.", "backbone.pre."),
    ("kps.", "backbone.kps."),
    ("cnvs.", "backbone.cnvs."),
    ("cnvs_.", "backbone.cnvs_."),
    ("inters.", "backbone.inters."),
    ("inters_.", "backbone.inters_."),
)
"""(original key prefix, our key prefix) of the trunks and necks, tried in order; the first match wins."""

HEAD_BRANCHES = {"hm": "heatmap", "wh": "size", "reg": "offset"}
"""Original head name -> our head branch."""

_HEAD = r"^(?P<branch>hm|wh|reg)\."
_PARAM = r"(?P<param>weight|bias)$"
HEAD_KEY_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(_HEAD + _PARAM), "head.{branch}.0.{param}"),  # head_conv <= 0: a single conv
    (re.compile(_HEAD + r"(?P<index>\d+)\." + _PARAM), "head.{branch}.{index}.{param}"),  # conv, ReLU, conv
    (re.compile(_HEAD + r"(?P<stack>\d+)\.0\.conv\." + _PARAM), "head.{stack}.{branch}.0.{param}"),  # hourglass
    (re.compile(_HEAD + r"(?P<stack>\d+)\.1\." + _PARAM), "head.{stack}.{branch}.2.{param}"),
)
"""(pattern of an original head key, our key template); the hourglass keeps one head per stack and its
hidden layer is a ``convolution`` module (``.conv``) without BatchNorm."""

ARCHITECTURE_SETTINGS: dict[str, str] = {
    "resnet18": "model.backbone.type=resnet18",
    "resnet34": "model.backbone.type=resnet34",
    "resnet50": "model.backbone.type=resnet50",
    "resnet101": "model.backbone.type=resnet101",
    "dla34": "model.backbone.type=dla34 model.neck.type=ida_up model.neck.channels=[64,128,256,512] "
    "model.head.head_conv=256 (configs/centernet_dla34_coco_512.yaml)",
    "hourglass104": "model.backbone.type=hourglass104 model.neck.type=identity model.neck.channels=[] "
    "model.head.head_conv=256 (configs/centernet_hourglass104_coco_512.yaml)",
}
"""Our backbone type -> the config settings that build the original architecture around it."""

_OPTIONAL_SUFFIX = ".num_batches_tracked"  # the original's PyTorch 0.4 BatchNorm had no such buffer
_HEATMAP_BRANCH = "heatmap"
_MAX_NAMED_KEYS = 5

# a key (our naming) only this backbone has -> its type
_BACKBONE_MARKERS: tuple[tuple[str, str], ...] = (
    ("backbone.base_layer.", "dla34"),
    ("backbone.kps.", "hourglass104"),
)

# (blocks in layer1..layer4, bottleneck blocks) -> our backbone type
_RESNET_DEPTHS: dict[tuple[tuple[int, ...], bool], str] = {
    ((2, 2, 2, 2), False): "resnet18",
    ((3, 4, 6, 3), False): "resnet34",
    ((3, 4, 6, 3), True): "resnet50",
    ((3, 4, 23, 3), True): "resnet101",
}
_BLOCK_KEY = re.compile(r"^backbone\.layer(\d)\.(\d+)\.")
_HIDDEN_HEATMAP_KEY = re.compile(r"^head\.(\d+\.)?heatmap\.0\.weight$")
_NUM_STAGES = 4


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_original_centernet_checkpoint` did (all keys in our naming).

    Attributes:
        source: the checkpoint file.
        loaded: model keys filled from the file.
        skipped: model keys present in the file but not loaded (heatmap classes differ); they keep
            the model's initialisation.
        missing: model keys the file lacks (only BatchNorm ``num_batches_tracked`` buffers); they keep
            the model's values.
    """

    source: str
    loaded: tuple[str, ...]
    skipped: tuple[str, ...]
    missing: tuple[str, ...]


def _some(keys: list[str]) -> str:
    """Up to ``_MAX_NAMED_KEYS`` keys joined for an error message, with a count of the rest."""
    shown = ", ".join(keys[:_MAX_NAMED_KEYS])
    rest = len(keys) - _MAX_NAMED_KEYS
    return f"{shown}, ... ({rest} more)" if rest > 0 else shown


def map_original_key(key: str) -> str | None:
    """Translate one original CenterNet key (``module.`` already stripped) to our naming.

    Args:
        key: e.g. ``"deconv_layers.3.weight"``.

    Returns:
        Our key (``"neck.layers.3.weight"``), or ``None`` if the key belongs to no supported part.
    """
    for pattern, template in HEAD_KEY_RULES:
        match = pattern.match(key)
        if match:
            fields = match.groupdict()
            return template.format(**{**fields, "branch": HEAD_BRANCHES[fields["branch"]]})
    for original, ours in ORIGINAL_TO_OURS:
        if key.startswith(original):
            return ours + key[len(original) :]
    return None


def _resnet_type(keys: list[str]) -> str | None:
    """Our backbone type for the ResNet trunk whose (our-naming) keys are ``keys``, or ``None``."""
    blocks = [0] * _NUM_STAGES
    for key in keys:
        match = _BLOCK_KEY.match(key)
        if match:
            stage, block = int(match.group(1)) - 1, int(match.group(2))
            blocks[stage] = max(blocks[stage], block + 1)
    bottleneck = any(key.startswith("backbone.layer1.0.conv3.") for key in keys)
    return _RESNET_DEPTHS.get((tuple(blocks), bottleneck))


def _backbone_type(keys: list[str]) -> str | None:
    """Our backbone type for a state_dict with these (our-naming) keys, or ``None`` if not recognised."""
    for marker, backbone_type in _BACKBONE_MARKERS:
        if any(key.startswith(marker) for key in keys):
            return backbone_type
    return _resnet_type(keys)


def _head_conv(state: Mapping[str, torch.Tensor]) -> int | None:
    """Hidden width of the heatmap branch (``head_conv``) of an our-naming state_dict, if it has one."""
    for key, value in state.items():
        if _HIDDEN_HEATMAP_KEY.match(key) and value.dim() == 4 and value.shape[-1] > 1:
            return int(value.shape[0])
    return None


def _architecture_hint(mapped: Mapping[str, torch.Tensor], model: CenterNet) -> str:
    """A ``"; this looks like ..."`` hint when the file's architecture differs from the model's, else ``""``."""
    file_keys = list(mapped)
    model_state = model.state_dict()
    hints = []
    file_type = _backbone_type(file_keys)
    if file_type is not None and file_type != _backbone_type(list(model_state)):
        hints.append(f"the file holds a {file_type} backbone (set {ARCHITECTURE_SETTINGS[file_type]})")
    elif file_type is None or file_type in _RESNET_DEPTHS.values():  # a ResNet takes either neck
        file_dcn = any(k.startswith("neck.") and ".conv_offset_mask." in k for k in file_keys)
        model_dcn = isinstance(model.neck, DcnDeconvNeck)
        if file_dcn and not model_dcn:
            hints.append("the file holds a ResDCN neck (set model.neck.type=dcn_deconv, channels [256, 128, 64])")
        elif not file_dcn and model_dcn and any(k.startswith("neck.") for k in file_keys):
            hints.append("the file holds a plain deconv neck (set model.neck.type=deconv, channels [256, 256, 256])")
    file_width, model_width = _head_conv(mapped), _head_conv(model_state)
    if file_width is not None and model_width is not None and file_width != model_width:
        hints.append(f"the file's heads have {file_width} hidden channels (set model.head.head_conv={file_width})")
    return f"; {'; '.join(hints)}" if hints else ""


def _heatmap_class_keys(model: CenterNet) -> set[str]:
    """Our keys of every heatmap branch's final conv (the tensors whose shape depends on the class count)."""
    keys: set[str] = set()
    state = model.state_dict()
    for name, branch in model.head.named_modules(prefix="head"):
        if name.rsplit(".", 1)[-1] == _HEATMAP_BRANCH and isinstance(branch, nn.Sequential) and len(branch):
            final = f"{name}.{len(branch) - 1}."
            keys |= {k for k in state if k.startswith(final)}
    return keys


def _map_file_keys(state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Translate every key of the file, failing on keys that belong to nothing we can build."""
    mapped: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        ours = map_original_key(key)
        if ours is None:
            unknown.append(key)
        else:
            mapped[ours] = value
    if unknown:
        raise ValueError(
            f"original checkpoint {source}: {len(unknown)} keys map to no part of the model "
            f"({_some(unknown)}); supported are the ResNet/ResDCN, DLA-34 and Hourglass-104 trunks and necks "
            f"and the hm/wh/reg heads"
        )
    return mapped


def load_original_centernet_checkpoint(
    model: CenterNet, path: str | os.PathLike[str], *, strict_heads: bool = False
) -> LoadReport:
    """Fill ``model`` in place from an original CenterNet checkpoint (see the module docstring).

    Args:
        model: a CenterNet with the file's architecture (see the module docstring).
        path: the ``.pth`` file (``{"epoch", "state_dict"}``, or a bare state_dict).
        strict_heads: if True, a heatmap class count that differs from the model's is an error instead
            of a skip.

    Returns:
        A :class:`LoadReport` of the loaded, skipped and missing keys.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        RuntimeError: the file cannot be read with ``torch.load(weights_only=True)``.
        ValueError: a key of the file maps to nothing in the model, the model has keys the file lacks
            (other than ``num_batches_tracked``), or a shape differs outside the skipped heatmap layers; the
            message names up to 5 keys and, when the file holds another architecture, the settings for it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"original checkpoint {path} does not exist")
    source = str(path)
    mapped = _map_file_keys(read_state_dict_file(path), source)
    expected = model.state_dict()

    unused = [k for k in mapped if k not in expected]
    absent = [k for k in expected if k not in mapped]
    required = [k for k in absent if not k.endswith(_OPTIONAL_SUFFIX)]
    if unused or required:
        parts = []
        if unused:
            parts.append(f"{len(unused)} keys of the file are not in the model ({_some(unused)})")
        if required:
            parts.append(f"{len(required)} model keys are not in the file ({_some(required)})")
        hint = _architecture_hint(mapped, model)
        raise ValueError(f"original checkpoint {source} does not match the model: {'; '.join(parts)}{hint}")

    class_keys = _heatmap_class_keys(model)
    mismatched = [k for k, v in mapped.items() if v.shape != expected[k].shape]
    class_mismatch = bool(class_keys) and any(k in class_keys for k in mismatched)
    if class_mismatch and strict_heads:
        key = next(k for k in mismatched if k in class_keys)
        raise ValueError(
            f"original checkpoint {source}: {key!r} has shape {tuple(mapped[key].shape)}, the model "
            f"{tuple(expected[key].shape)} (heatmap classes differ; strict_heads=False skips the heatmap layer)"
        )
    skipped = sorted(class_keys) if class_mismatch else []
    wrong = [k for k in mismatched if k not in skipped]
    if wrong:
        details = [f"{k} {tuple(mapped[k].shape)} vs {tuple(expected[k].shape)}" for k in wrong]
        raise ValueError(
            f"original checkpoint {source}: {len(wrong)} shapes differ, file vs model ({_some(details)})"
            f"{_architecture_hint(mapped, model)}"
        )

    loaded = [k for k in mapped if k not in skipped]
    model.load_state_dict({k: mapped[k] for k in loaded}, strict=False)
    if skipped:
        file_classes = int(mapped[skipped[0]].shape[0])
        logger.warning(
            "original checkpoint %s has %d heatmap classes, the model %d: not loading %s (fine-tuning to a "
            "new dataset; these keep their initialisation)",
            source,
            file_classes,
            int(expected[skipped[0]].shape[0]),
            ", ".join(skipped),
        )
    logger.info("loaded %d tensors from original checkpoint %s", len(loaded), source)
    return LoadReport(source=source, loaded=tuple(loaded), skipped=tuple(skipped), missing=tuple(absent))
