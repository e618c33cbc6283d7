"""The configuration schema: every key, its type, its default and what it means.

A YAML experiment file is merged onto these defaults and validated against them by
:func:`centernet.config.load_config`; unknown keys and wrong types are errors. Sections whose
dataclass has a ``type`` field with several variants (the heatmap and box losses) are *tagged unions*:
the ``type`` value selects which dataclass validates the rest of the section. :func:`cross_key_error`
checks what a single key's type cannot: value ranges and keys that must agree with each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

IMAGENET_MEAN = [0.485, 0.456, 0.406]  # RGB, fractions of 255
IMAGENET_STD = [0.229, 0.224, 0.225]
CENTERNET_SCALE_CHOICES = [0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3]
TTF_GAUSSIAN_SCALE = 0.54  # TTFNet's released alpha and beta
TTF_LTRB_SCALE = 16.0  # TTFNet's wh_offset_base
TTF_GIOU_WEIGHT = 5.0  # TTFNet's wh_weight


@dataclass
class BackboneConfig:
    type: str = "resnet18"  # backbone registry name (resnet18/34/50/101, efficientnet_lite0, dla34, hourglass104)
    weights: str | None = None  # null = random init | imagenet | path to a local state_dict file
    frozen_bn: bool = False  # backbone BatchNorm frozen at its loaded statistics and affine (FrozenBatchNorm2d)


@dataclass
class NeckConfig:
    type: str = "deconv"  # neck registry name (deconv, deconv_lateral, dcn_deconv, ida_up, identity)
    channels: list[int] = field(default_factory=lambda: [256, 256, 256])  # one entry per 2x upsampling


@dataclass
class HeadConfig:
    head_conv: int = 64  # channels of the 3x3 conv in each head branch (<= 0: a single 1x1 conv)
    prior_prob: float = 0.1  # initial sigmoid(heatmap) everywhere: heatmap bias = -log((1 - p) / p)
    box: Literal["size_offset", "ltrb"] = "size_offset"  # size + offset at the peak | TTFNet distances to the 4 sides
    ltrb_scale: float = TTF_LTRB_SCALE  # ltrb: output = relu(raw) * ltrb_scale input pixels (TTFNet wh_offset_base)


@dataclass
class ModelConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    neck: NeckConfig = field(default_factory=NeckConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    init_checkpoint: str | None = None  # original CenterNet .pth (res/resdcn_18/101, dla_34, hourglass) to start from


@dataclass
class CocoDatasetConfig:
    type: Literal["coco"] = "coco"  # COCO-format annotation file + image folder
    ann_file: str = ""  # COCO annotation JSON (relative paths: to the working directory)
    img_dir: str = ""  # folder the COCO file_name entries are relative to


@dataclass
class VocDatasetConfig:
    type: Literal["voc"] = "voc"  # Pascal VOC layout (Annotations/, JPEGImages/, ImageSets/Main/)
    root: str = ""  # a VOC20xx folder, or the VOCdevkit folder when `years` is set
    split: str = ""  # ImageSets/Main/<split>.txt, e.g. trainval or test
    years: list[int] | None = None  # join VOCdevkit/VOC<year> folders, e.g. [2007, 2012]


DatasetConfig = CocoDatasetConfig | VocDatasetConfig


@dataclass
class SliceConfig:
    """Sliced inference on overlapping windows, for images larger than the network input (docs/inference.md)."""

    size: int = 0  # window side in image pixels; 0 = off (the whole image at data.input_size)
    overlap: float = 0.2  # share of a window that its neighbours also cover, in [0, 1)
    scale: float = 1.0  # network pixels per image pixel: the network input is round(size * scale)
    full_image: bool = False  # also run the whole image at data.input_size and merge (objects larger than a window)
    batch_size: int = 0  # windows per forward pass; 0 = chosen for the device (CPU 1, CUDA 16)
    merge_iou: float = 0.5  # same-class boxes of two windows above this IoU are one object
    merge_ios: float = 0.5  # a box cut by a window edge lying this much inside another box is that object


@dataclass
class NamedCocoDatasetConfig(CocoDatasetConfig):
    name: str = ""  # a validation set's name: an identifier, unique in data.val (docs/evaluation.md)
    slice: SliceConfig | None = None  # this set's sliced inference; null = eval.slice


@dataclass
class NamedVocDatasetConfig(VocDatasetConfig):
    name: str = ""  # a validation set's name: an identifier, unique in data.val (docs/evaluation.md)
    slice: SliceConfig | None = None  # this set's sliced inference; null = eval.slice


NamedDatasetConfig = NamedCocoDatasetConfig | NamedVocDatasetConfig


@dataclass
class DataConfig:
    train: DatasetConfig = field(default_factory=CocoDatasetConfig)
    # one val set, or a list of named sets [{name: yell, type: coco, ...}, ...] all evaluated each time
    val: DatasetConfig | list[NamedDatasetConfig] = field(default_factory=CocoDatasetConfig)
    classes: list[str] | None = None  # null = all categories (VOC: the 20 VOC classes); a list restricts and orders
    input_size: list[int] = field(default_factory=lambda: [512, 512])  # network input (height, width)
    down_ratio: int = 4  # output stride of the model
    max_objects: int = 128  # objects kept per image (the rest dropped with one warning)
    batch_size: int = 32  # images per step (per process under DDP)
    workers: int = 4  # loader worker processes (0 = load in the main process)
    channel_order: Literal["rgb", "bgr"] = "rgb"  # bgr reproduces the original (BGR into RGB backbones)
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))  # per channel, fractions of 255
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    on_bad_sample: Literal["error", "skip"] = "error"  # bad image/annotation: stop, or skip it with a counted warning


@dataclass
class AlbumentationsBboxConfig:
    min_visibility: float = 0.0  # drop a box (or ignore region) keeping less than this fraction of its area
    min_area: float = 0.0  # drop a box (or ignore region) smaller than this many pixels after a transform


@dataclass
class AugmentConfig:
    random_crop: bool = True  # the original random crop (scale choice + random centre)
    scale_choices: list[float] = field(default_factory=lambda: list(CENTERNET_SCALE_CHOICES))
    scale_jitter: float = 0.4  # used when random_crop is false: scale *= clip(N(1, sf), 1-sf, 1+sf)
    shift_jitter: float = 0.1  # used when random_crop is false: centre shift as a fraction of the scale
    flip_prob: float = 0.5  # horizontal flip probability
    color_jitter: bool = True  # brightness / contrast / saturation jitter
    pca_lighting_std: float = 0.1  # AlexNet-style PCA lighting noise (0 disables)
    # albumentations transforms run on the uint8 image before the crop/scale/flip warp, e.g.
    # [{type: RandomRotate90, p: 0.5}, {type: HueSaturationValue, hue_shift_limit: 10}] (docs/augmentation.md)
    albumentations: list[dict[str, Any]] = field(default_factory=list)
    albumentations_bbox: AlbumentationsBboxConfig = field(default_factory=AlbumentationsBboxConfig)


@dataclass
class TargetConfig:
    radius: str = "centernet"  # Gaussian radius formula: centernet (original) | cornernet (corrected)
    min_overlap: float = 0.7  # IoU a box shifted by the radius still reaches
    heatmap: Literal["circular", "elliptical"] = "circular"  # CenterNet radius formula | TTFNet radii from h, w
    alpha: float = TTF_GAUSSIAN_SCALE  # elliptical: radii int(h / 2 * alpha), int(w / 2 * alpha) on the grid, (0, 1]
    box: Literal["center", "gaussian_area"] = "center"  # size/offset at the peak | every cell of the beta-Gaussian
    beta: float = TTF_GAUSSIAN_SCALE  # gaussian_area: the box area's Gaussian has radii of alpha's form, (0, 1]
    box_weight: Literal["log_area", "area", "sqrt_area", "uniform"] = "log_area"  # gaussian_area: share of each box


@dataclass
class PenaltyReducedFocalConfig:
    type: Literal["penalty_reduced_focal"] = "penalty_reduced_focal"
    weight: float = 1.0  # multiplier of the term in the total loss
    alpha: float = 2.0  # focusing exponent on (1 - p) / p
    beta: float = 4.0  # penalty reduction (1 - y)^beta near centres


@dataclass
class FocalConfig:
    type: Literal["focal"] = "focal"
    weight: float = 1.0
    alpha: float = 0.25  # positive/negative balance (< 0 disables)
    gamma: float = 2.0  # focusing exponent


GHM_DENSITIES = ("batch", "ema", "epoch", "batch_then_epoch")
GHM_EMA_INITS = ("first_count", "zero")


@dataclass
class GHMCConfig:
    type: Literal["ghm_c"] = "ghm_c"
    weight: float = 1.0
    bins: int = 10  # number of gradient-norm bins on [0, 1]
    momentum: float = 0.0  # EMA momentum of the bin counts (density: ema), in [0, 1)
    density: Literal["batch", "ema", "epoch", "batch_then_epoch"] = "batch"  # where the gradient density comes from
    ema_init: Literal["first_count", "zero"] = "first_count"  # ema: a bin's average starts at its first count | 0
    switch_epoch: int = 0  # batch_then_epoch: last epoch of batch density; 0 = switch on switch_tolerance
    switch_tolerance: float = 0.01  # batch_then_epoch: switch when the epoch-mean loss improves by less (relative)


@dataclass
class GHMCenterNetConfig:
    type: Literal["ghm_centernet"] = "ghm_centernet"
    weight: float = 1.0
    beta: float = 4.0  # penalty reduction (1 - y)^beta of the negatives near centres
    bins: int = 10  # the gradient-density keys as in ghm_c
    momentum: float = 0.0
    density: Literal["batch", "ema", "epoch", "batch_then_epoch"] = "batch"
    ema_init: Literal["first_count", "zero"] = "first_count"
    switch_epoch: int = 0
    switch_tolerance: float = 0.01


@dataclass
class BCEConfig:
    type: Literal["bce"] = "bce"
    weight: float = 1.0


HeatmapLossConfig = PenaltyReducedFocalConfig | FocalConfig | GHMCConfig | GHMCenterNetConfig | BCEConfig


@dataclass
class RegressionLossConfig:
    type: Literal["l1"] = "l1"
    weight: float = 1.0


@dataclass
class L1BoxLossConfig:
    type: Literal["l1"] = "l1"  # CenterNet: L1 on size and offset at the peaks (loss.size, loss.offset)
    weight: float = 1.0  # multiplies loss.size.weight and loss.offset.weight


@dataclass
class GIoUBoxLossConfig:
    type: Literal["giou"] = "giou"  # TTFNet: GIoU of the ltrb boxes on the gaussian_area cells
    weight: float = TTF_GIOU_WEIGHT


BoxLossConfig = L1BoxLossConfig | GIoUBoxLossConfig


@dataclass
class LossConfig:
    heatmap: HeatmapLossConfig = field(default_factory=PenaltyReducedFocalConfig)
    size: RegressionLossConfig = field(default_factory=lambda: RegressionLossConfig(weight=0.1))
    offset: RegressionLossConfig = field(default_factory=lambda: RegressionLossConfig(weight=1.0))
    box: BoxLossConfig = field(default_factory=L1BoxLossConfig)  # l1 (size/offset heads) | giou (ltrb head)


@dataclass
class SolverConfig:
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1.25e-4  # base learning rate
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 0.0
    epochs: int = 140
    lr_steps: list[int] = field(default_factory=lambda: [90, 120])  # epochs at which lr *= lr_gamma
    lr_gamma: float = 0.1
    warmup_iters: int = 0  # linear warmup length in iterations
    min_iters: int = 0  # floor of optimisation steps: fewer -> more epochs, lr steps stretched (docs/schedules.md)
    warmup_factor: float = 0.001  # lr multiplier at iteration 0 of the warmup
    backbone_lr_mult: float = 1.0  # the backbone trains at lr * backbone_lr_mult (e.g. 0.1 keeps pretrained features)
    grad_clip: float | None = None  # max global gradient norm (null = no clipping)
    schedule: Literal["step", "cosine"] = "step"  # lr decay after the warmup: lr_steps drops | cosine to min_lr_factor
    min_lr_factor: float = 0.0  # cosine: final lr as a fraction of the base lr
    reference_batch_size: int | None = None  # lr is given for this global batch (linear scaling); null/0 = as is
    ema: bool = False  # keep an exponential moving average of the weights (used for eval and inference)
    ema_decay: float = 0.9998  # EMA decay once warmed up
    ema_warmup_iters: int = 2000  # decay ramps as ema_decay * (1 - exp(-updates / ema_warmup_iters))
    skip_nonfinite_steps: int = 0  # skip up to N steps with a non-finite loss (warning each), then stop


@dataclass
class EvalConfig:
    metric: Literal["coco", "voc07", "voc"] = "coco"  # COCO mAP | VOC07 11-point AP | VOC2010+ area AP
    interval: int = 5  # evaluate every N epochs (and after the last one); 0 = only after the last
    topk: int = 100  # detections kept per image (sliced: per window)
    max_dets: int = 100  # COCO AP counts each image's best this many detections (COCO's 100; raise it for large images)
    flip: bool = False  # flip test-time augmentation
    scales: list[float] = field(default_factory=lambda: [1.0])  # test scales; several = multi-scale test
    resize: Literal["fixed", "pad"] = "fixed"  # fixed = data.input_size | pad = keep resolution, pad to (s | 31) + 1
    merge: Literal["nms", "soft_nms"] = "soft_nms"  # per-class merge of the detections of several scales
    nms_iou: float = 0.5  # merge: nms suppresses same-class boxes overlapping a better one above this IoU
    soft_nms_sigma: float = 0.5  # merge: soft_nms (Gaussian) decays scores by exp(-IoU^2 / sigma)
    soft_nms_score_thr: float = 0.001  # merge: soft_nms drops detections whose decayed score falls below this
    backend: Literal["pycocotools", "faster_coco_eval"] = "pycocotools"
    batch_size: int = 0  # 0 = data.batch_size
    score_threshold: float = 0.3  # precision/recall/F1 counted on detections scoring at least this
    pr_iou: float = 0.4  # precision/recall: a detection matches a ground-truth box at IoU above this
    slice: SliceConfig = field(default_factory=SliceConfig)  # sliced inference for every val set (size 0 = off)
    best_metric: str = ""  # metric ranking best.pth, e.g. AP50 or yell/AP; "" = AP (coco) / mAP (voc) of the first set


@dataclass
class RuntimeConfig:
    seed: int = 317
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["off", "fp16", "bf16"] = "off"  # autocast precision (bf16 also on CPU); losses stay fp32
    channels_last: bool = False  # NHWC memory format for the model and its input (faster convs)
    log_interval: int = 20  # iterations between logged training records
    vis_interval: int = 0  # iterations between TensorBoard images (input + boxes, heatmaps); 0 = off
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower)
    threads: int = 0  # torch intra-op threads (0 = torch default)
    sync_bn: bool = False  # under DDP, BatchNorm statistics over the global batch (all ranks)
    dist_timeout_min: float = 30.0  # DDP: joining the group and each collective give up after this (then a restart)
    checkpoint_interval: int = 0  # also save last.pth every N iterations mid-epoch (0 = at epoch ends only)
    checkpoint_minutes: float = 0.0  # also save last.pth mid-epoch once this many minutes passed since the last one
    keep_checkpoints: int = 2  # newest checkpoints kept (>= 1); an older one is the fallback for a corrupt newest
    # signals that stop training cleanly at the next step (checkpoint, exit 128 + signal; docs/failures.md)
    stop_signals: list[str] = field(default_factory=lambda: ["SIGTERM", "SIGINT", "SIGUSR1"])


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


# The box-regression keys that must agree: (model.head.box, target.box, loss.box.type).
BOX_SETUPS = {
    ("size_offset", "center", "l1"): "CenterNet",
    ("ltrb", "gaussian_area", "giou"): "TTFNet",
}


def cross_key_error(config: Config) -> str | None:
    """A one-line description of what is wrong beyond single key types, or None when the config is valid.

    Checks the names of the ``data.val`` sets and ``eval.best_metric`` (:func:`val_set_error`), that
    ``target.alpha``, ``target.beta`` lie in (0, 1], the GHM loss keys agree (:func:`ghm_options_error`),
    ``model.head.ltrb_scale`` > 0, and that the box head, box targets and box loss form one of
    :data:`BOX_SETUPS`.
    """
    problem = val_set_error(config)
    if problem is not None:
        return problem
    for key, value in (("target.alpha", config.target.alpha), ("target.beta", config.target.beta)):
        if not 0.0 < value <= 1.0:
            return f"{key}: {value} is not in (0, 1]"
    heatmap = config.loss.heatmap
    if isinstance(heatmap, GHMCConfig | GHMCenterNetConfig):
        problem = ghm_options_error(heatmap.bins, heatmap.momentum, heatmap.density, heatmap.ema_init,
                                    heatmap.switch_epoch, heatmap.switch_tolerance)
        if problem is not None:
            return f"loss.heatmap ({heatmap.type}): {problem}"
    if not config.model.head.ltrb_scale > 0:
        return f"model.head.ltrb_scale: {config.model.head.ltrb_scale} is not > 0"
    setup = (config.model.head.box, config.target.box, config.loss.box.type)
    if setup not in BOX_SETUPS:
        valid = " or ".join(f"{'/'.join(keys)} ({name})" for keys, name in BOX_SETUPS.items())
        return f"model.head.box/target.box/loss.box.type: {'/'.join(setup)} do not go together; use {valid}"
    return None


def val_set_names(config: Config) -> list[str] | None:
    """The names of the ``data.val`` sets, or ``None`` for a single unnamed set."""
    val = config.data.val
    return [item.name for item in val] if isinstance(val, list) else None


def val_set_error(config: Config) -> str | None:
    """One line on what is wrong with the ``data.val`` names or ``eval.best_metric``, or None."""
    names = val_set_names(config)
    best = config.eval.best_metric
    if names is None:
        if "/" in best:
            return f"eval.best_metric: {best!r} names a set, but data.val is a single unnamed set; use e.g. AP"
        return None
    if not names:
        return "data.val: the list of named val sets is empty; give at least one {name: ..., type: ...}"
    for index, name in enumerate(names):
        if not name.isidentifier():
            return f"data.val[{index}].name: {name!r} is not an identifier (letters, digits, _; e.g. yell)"
        if name in names[:index]:
            return f"data.val[{index}].name: {name!r} is used twice; val set names must be unique"
    if best:
        set_name, sep, key = best.partition("/")
        if not sep or not key or set_name not in names:
            return f"eval.best_metric: {best!r} is not <set>/<metric> with a set of data.val ({', '.join(names)})"
    return None


def ghm_options_error(
    bins: object, momentum: object, density: object, ema_init: object, switch_epoch: object, switch_tolerance: object
) -> str | None:
    """A one-line description of what is wrong with GHM gradient-density options, or None when they are valid.

    ``bins`` an integer >= 1; ``momentum`` in [0, 1) and > 0 exactly when ``density`` is ``ema``;
    ``ema_init: zero`` only with ``ema``; ``switch_epoch`` an integer >= 0 (> 0 only with
    ``batch_then_epoch``) and ``switch_tolerance`` >= 0 (see ``docs/loss_study.md``).
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        return f"bins must be an integer >= 1, got {bins!r}"
    if isinstance(momentum, bool) or not isinstance(momentum, int | float) or not 0.0 <= momentum < 1.0:
        return f"momentum must be in [0, 1), got {momentum!r}"
    if density not in GHM_DENSITIES:
        return f"density must be one of {list(GHM_DENSITIES)}, got {density!r}"
    if (density == "ema") != (momentum > 0):
        return (f"density='ema' needs 0 < momentum < 1 and momentum > 0 needs density='ema'; "
                f"got density={density!r}, momentum={momentum!r}")
    if ema_init not in GHM_EMA_INITS:
        return f"ema_init must be one of {list(GHM_EMA_INITS)}, got {ema_init!r}"
    if ema_init != "first_count" and density != "ema":
        return f"ema_init={ema_init!r} needs density='ema', got density={density!r}"
    if isinstance(switch_epoch, bool) or not isinstance(switch_epoch, int) or switch_epoch < 0:
        return f"switch_epoch must be an integer >= 0, got {switch_epoch!r}"
    if isinstance(switch_tolerance, bool) or not isinstance(switch_tolerance, int | float) or not switch_tolerance >= 0:
        return f"switch_tolerance must be >= 0, got {switch_tolerance!r}"
    if switch_epoch > 0 and density != "batch_then_epoch":
        return f"switch_epoch={switch_epoch} needs density='batch_then_epoch', got density={density!r}"
    return None
