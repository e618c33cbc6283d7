"""CenterNet models: backbones, necks, head, the detector and its builder.

Importing this package registers every built-in backbone and neck in
:data:`BACKBONES` / :data:`NECKS`.
"""

from centernet.models import backbones as backbones  # registers the backbones
from centernet.models import ida_up as ida_up  # registers the ida_up neck
from centernet.models import identity_neck as identity_neck  # registers the identity neck
from centernet.models.dcn import DeformConv
from centernet.models.detector import CenterNet, build_centernet
from centernet.models.heads import OUTPUT_NAMES, CenterNetHead, prior_bias
from centernet.models.necks import DeconvNeck
from centernet.models.registry import BACKBONES, NECKS
from centernet.utils.registry import Registry, UnknownNameError

__all__ = [
    "BACKBONES",
    "NECKS",
    "OUTPUT_NAMES",
    "CenterNet",
    "CenterNetHead",
    "DeconvNeck",
    "DeformConv",
    "Registry",
    "UnknownNameError",
    "build_centernet",
    "prior_bias",
]
