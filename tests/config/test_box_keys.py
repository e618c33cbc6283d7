"""Config keys of the TTFNet options: heatmap shape, box targets, box head and box loss, and their agreement."""

from __future__ import annotations

from pathlib import Path

import pytest

from centernet.config import Config, ConfigError, config_from_dict, config_to_dict, load_config
from centernet.config.schema import GIoUBoxLossConfig, L1BoxLossConfig, cross_key_error

TTF = ["model.head.box=ltrb", "target.box=gaussian_area", "loss.box.type=giou"]


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    path = tmp_path / "x.yaml"
    path.write_text("")
    return path


def test_defaults_keep_centernet(empty: Path) -> None:
    cfg = load_config(empty)
    assert (cfg.target.heatmap, cfg.target.box, cfg.model.head.box) == ("circular", "center", "size_offset")
    assert cfg.loss.box == L1BoxLossConfig(weight=1.0)
    assert (cfg.target.alpha, cfg.target.beta, cfg.target.box_weight) == (0.54, 0.54, "log_area")
    assert cfg.model.head.ltrb_scale == 16.0
    assert cross_key_error(Config()) is None


def test_ttfnet_setup_loads_with_its_giou_weight(empty: Path) -> None:
    cfg = load_config(empty, [*TTF, "target.heatmap=elliptical", "target.box_weight=sqrt_area"])
    assert cfg.loss.box == GIoUBoxLossConfig(weight=5.0)  # changing the type starts afresh: TTFNet's 5
    assert (cfg.model.head.box, cfg.target.box, cfg.target.heatmap) == ("ltrb", "gaussian_area", "elliptical")
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_elliptical_heatmap_alone_is_valid(empty: Path) -> None:
    cfg = load_config(empty, ["target.heatmap=elliptical", "target.alpha=0.3"])
    assert (cfg.target.heatmap, cfg.target.alpha, cfg.model.head.box) == ("elliptical", 0.3, "size_offset")


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (["target.heatmap=eliptical"], r"target\.heatmap: 'eliptical' is not one of .*did you mean 'elliptical'"),
        (["target.box=gaussian"], r"target\.box: 'gaussian' is not one of \['center', 'gaussian_area'\]"),
        (["target.box_weight=log"], r"target\.box_weight: 'log' is not one of"),
        (["model.head.box=xyxy"], r"model\.head\.box: 'xyxy' is not one of \['size_offset', 'ltrb'\]"),
        (["loss.box.type=iou"], r"loss\.box\.type: 'iou' is not one of \['giou', 'l1'\]"),
        (["target.alpha=0"], r"target\.alpha: 0\.0 is not in \(0, 1\]"),
        (["target.beta=1.2"], r"target\.beta: 1\.2 is not in \(0, 1\]"),
        ([*TTF, "model.head.ltrb_scale=0"], r"model\.head\.ltrb_scale: 0\.0 is not > 0"),
        (
            ["model.head.box=ltrb"],
            r"command-line override 'model\.head\.box=ltrb' \(on top of .*x\.yaml\): "
            r"model\.head\.box/target\.box/loss\.box\.type: ltrb/center/l1 do not go together; "
            r"use size_offset/center/l1 \(CenterNet\) or ltrb/gaussian_area/giou \(TTFNet\)$",
        ),
        (TTF[1:], r"size_offset/gaussian_area/giou do not go together"),
    ],
)
def test_invalid_values_and_combinations_name_the_keys(empty: Path, overrides: list[str], pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern) as info:
        load_config(empty, overrides)
    assert "\n" not in str(info.value)
