"""The ``ida_up`` neck: the original CenterNet DLA-34 upsampling (``DLASeg``'s ``dla_up`` + ``ida_up``).

Iterative deep aggregation (IDA, Yu et al. 2018) merges maps of decreasing resolution pairwise, from the
coarsest up: each step projects the coarser map (:class:`DeformBlock`: 3x3 modulated deformable conv ->
BatchNorm -> ReLU), upsamples it with a depthwise (``groups = channels``) transposed conv initialised to
bilinear interpolation, adds the finer map and fuses the sum with a second :class:`DeformBlock`.

:class:`DLAUp` runs IDA over the backbone levels from the coarsest down to the output stride, producing one
aggregated map per level; :class:`IDAUp` then brings those (except the coarsest) to the output stride and
merges them. Module names follow the original (``dla_up.ida_<i>.{proj,up,node}_<j>``,
``ida_up.{proj,up,node}_<j>``, ``<block>.conv`` for the DCN and ``<block>.actf.0`` for the BatchNorm), so
the original checkpoint keys ``dla_up.*`` / ``ida_up.*`` map onto ``neck.dla_up.*`` / ``neck.ida_up.*``.

``channels`` (config ``model.neck.channels``) lists the backbone levels the neck aggregates, finest
first: it must equal the backbone's last ``len(channels)`` (>= 2) feature channels, and its length sets the
output stride, ``backbone stride / 2**(len(channels) - 1)``. For DLA-34: ``[64, 128, 256, 512]`` gives
stride 4 (the original's ``down_ratio 4``, 64 output channels); ``[32, 64, 128, 256, 512]`` stride 2,
``[128, 256, 512]`` stride 8, ``[256, 512]`` stride 16.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from centernet.models.dcn import DeformConv
from centernet.models.necks import fill_up_weights
from centernet.models.registry import NECKS

DCN_KERNEL_SIZE = 3
LEVEL_SCALE = 2
"""Resolution ratio of consecutive backbone levels."""


class DeformBlock(nn.Module):
    """3x3 modulated deformable conv (with bias) -> BatchNorm2d -> ReLU (the original ``DeformConv`` block).

    Attributes:
        conv: :class:`~centernet.models.dcn.DeformConv`.
        actf: ``nn.Sequential(BatchNorm2d, ReLU)``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = DeformConv(in_channels, out_channels, DCN_KERNEL_SIZE, padding=DCN_KERNEL_SIZE // 2)
        self.actf = nn.Sequential(nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """FloatTensor[B, in, H, W] -> FloatTensor[B, out, H, W]."""
        return self.actf(self.conv(x))


class IDAUp(nn.Module):
    """One iterative-deep-aggregation pass (the original ``IDAUp``).

    For ``j = 1 .. len(in_channels) - 1``: ``x[j] = node_j(up_j(proj_j(x[j])) + x[j - 1])``, where ``up_j``
    upsamples by ``factors[j]`` (depthwise ConvTranspose2d, kernel ``2f``, stride ``f``, padding ``f // 2``,
    no bias, bilinear init). ``x[0]`` must already have ``out_channels`` channels.

    Args:
        out_channels: channels of every merged map.
        in_channels: channels of the input maps, finest first.
        factors: upsampling factor of each map to the resolution of the first (``factors[0]`` unused).
    """

    def __init__(self, out_channels: int, in_channels: Sequence[int], factors: Sequence[int]) -> None:
        super().__init__()
        self.num_inputs = len(in_channels)
        for j in range(1, len(in_channels)):
            factor = int(factors[j])
            up = nn.ConvTranspose2d(
                out_channels,
                out_channels,
                2 * factor,
                stride=factor,
                padding=factor // 2,
                output_padding=0,
                groups=out_channels,
                bias=False,
            )
            fill_up_weights(up)
            self.add_module(f"proj_{j}", DeformBlock(in_channels[j], out_channels))
            self.add_module(f"up_{j}", up)
            self.add_module(f"node_{j}", DeformBlock(out_channels, out_channels))

    def forward(self, maps: list[torch.Tensor], start: int, end: int) -> None:
        """Merge ``maps[start:end]`` in place: afterwards ``maps[end - 1]`` is the aggregate at the finest stride.

        Args:
            maps: FloatTensor[B, c_i, H_i, W_i]; ``maps[start + j]`` is ``factors[j]`` times coarser than
                ``maps[start]``. Entries ``start + 1 .. end - 1`` are replaced.
            start: index of the finest map of this pass.
            end: one past the coarsest.
        """
        for i in range(start + 1, end):
            j = i - start
            upsampled = getattr(self, f"up_{j}")(getattr(self, f"proj_{j}")(maps[i]))
            maps[i] = getattr(self, f"node_{j}")(upsampled + maps[i - 1])


class DLAUp(nn.Module):
    """IDA from the coarsest level down (the original ``DLAUp``): one aggregated map per level.

    Args:
        channels: channels of the aggregated levels, finest first (equal to the backbone's).
    """

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        channels = list(channels)
        in_channels = list(channels)
        scales = [LEVEL_SCALE**i for i in range(len(channels))]
        self.num_levels = len(channels)
        for i in range(len(channels) - 1):
            j = -i - 2
            factors = [s // scales[j] for s in scales[j:]]
            self.add_module(f"ida_{i}", IDAUp(channels[j], in_channels[j:], factors))
            coarser = -j - 1  # levels above j, now merged to the resolution and channels of level j
            scales[j + 1 :] = [scales[j]] * coarser
            in_channels[j + 1 :] = [channels[j]] * coarser

    def forward(self, maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Aggregate the last ``num_levels`` backbone maps.

        Args:
            maps: the backbone maps, finest first; the last ``num_levels`` are used.

        Returns:
            ``num_levels`` maps, finest first, each at the stride and with the channels of its level; the
            coarsest is the backbone map itself.
        """
        layers = list(maps[-self.num_levels :])
        out = [layers[-1]]
        for i in range(self.num_levels - 1):
            getattr(self, f"ida_{i}")(layers, len(layers) - i - 2, len(layers))
            out.insert(0, layers[-1])
        return out


class IdaUpNeck(nn.Module):
    """The original DLA-34 neck: :class:`DLAUp` then :class:`IDAUp` over all but the coarsest aggregate.

    Args:
        feature_channels: channels of the backbone maps, finest first (each level 2x coarser).
        channels: the aggregated levels' channels (see the module docstring), e.g. ``[64, 128, 256, 512]``.

    Attributes:
        in_channels: channels of the backbone's last map.
        out_channels: ``channels[0]``.
        upsample_factor: ``2 ** (len(channels) - 1)``.
        dla_up: :class:`DLAUp`; ida_up: :class:`IDAUp`.

    Raises:
        ValueError: if ``channels`` has fewer than 2 entries or is not the tail of ``feature_channels``.
    """

    def __init__(self, feature_channels: Sequence[int], channels: Sequence[int]) -> None:
        super().__init__()
        feature_channels = [int(c) for c in feature_channels]
        channels = [int(c) for c in channels]
        if len(channels) < 2 or channels != feature_channels[-len(channels) :]:
            options = ", ".join(
                f"{feature_channels[-n:]} (upsampling x{LEVEL_SCALE ** (n - 1)})"
                for n in range(len(feature_channels), 1, -1)
            )
            raise ValueError(
                f"ida_up neck: channels {channels} must be the backbone's last levels, finest first "
                f"(its feature channels are {feature_channels}): one of {options}"
            )
        self.in_channels: int = feature_channels[-1]
        self.out_channels: int = channels[0]
        self.upsample_factor: int = LEVEL_SCALE ** (len(channels) - 1)
        self.dla_up = DLAUp(channels)
        self.ida_up = IDAUp(channels[0], channels[:-1], [LEVEL_SCALE**i for i in range(len(channels) - 1)])

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Aggregate the backbone maps into one map at the output stride.

        Args:
            features: backbone maps, finest first; the last ``len(channels)`` are used.

        Returns:
            FloatTensor[B, out_channels, h * upsample_factor, w * upsample_factor] (``h, w``: the last map).
        """
        levels = self.dla_up(features)[:-1]  # drop the coarsest, as the original (last_level 5)
        self.ida_up(levels, 0, len(levels))
        return levels[-1]


@NECKS.register("ida_up")
def ida_up(*, feature_channels: Sequence[int], channels: Sequence[int]) -> IdaUpNeck:
    """Build the original DLA-34 neck (DLAUp + IDAUp); see :class:`IdaUpNeck`."""
    return IdaUpNeck(feature_channels, channels)
