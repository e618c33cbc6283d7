"""Backbones, registered in :data:`centernet.models.registry.BACKBONES` on import.

A new backbone module must be imported here so that its ``@BACKBONES.register`` decorators run.
"""

from centernet.models.backbones.dla import DLABackbone, dla34
from centernet.models.backbones.efficientnet_lite import EfficientNetLite, efficientnet_lite0
from centernet.models.backbones.hourglass import HourglassBackbone, hourglass104
from centernet.models.backbones.resnet import (
    IMAGENET_WEIGHTS,
    ResNetBackbone,
    load_state_dict_checked,
    read_state_dict_file,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
)

__all__ = [
    "IMAGENET_WEIGHTS",
    "DLABackbone",
    "EfficientNetLite",
    "HourglassBackbone",
    "ResNetBackbone",
    "dla34",
    "efficientnet_lite0",
    "hourglass104",
    "load_state_dict_checked",
    "read_state_dict_file",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
]
