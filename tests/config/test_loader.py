"""Config loading: _base_ merge order, overrides, strict schema, error messages, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from centernet.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
    merge_dicts,
    parse_overrides,
    save_config,
)
from centernet.config.schema import FocalConfig, GHMCConfig, PenaltyReducedFocalConfig
from tests.conftest import EXPERIMENT_CONFIGS

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_empty_file_gives_schema_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "empty.yaml", ""))
    assert cfg == Config()
    assert cfg.solver.lr == 1.25e-4
    assert cfg.loss.size.weight == 0.1
    assert isinstance(cfg.loss.heatmap, PenaltyReducedFocalConfig)


def test_bases_merge_in_order_and_relative_to_the_file(tmp_path: Path) -> None:
    write(tmp_path / "base" / "a.yaml", "solver: {lr: 0.1, epochs: 3}\ndata: {input_size: [64, 64]}\n")
    write(tmp_path / "base" / "b.yaml", "solver: {lr: 0.2}\n")
    exp = write(tmp_path / "exp" / "x.yaml", "_base_: [../base/a.yaml, ../base/b.yaml]\nsolver: {epochs: 7}\n")
    cfg = load_config(exp)
    assert cfg.solver.lr == 0.2  # b after a
    assert cfg.solver.epochs == 7  # the file itself last
    assert cfg.data.input_size == [64, 64]  # kept from a


def test_base_as_single_string_and_nested_bases(tmp_path: Path) -> None:
    write(tmp_path / "root.yaml", "runtime: {seed: 5}\n")
    write(tmp_path / "mid.yaml", "_base_: root.yaml\nruntime: {log_interval: 3}\n")
    cfg = load_config(write(tmp_path / "leaf.yaml", "_base_: mid.yaml\n"))
    assert (cfg.runtime.seed, cfg.runtime.log_interval) == (5, 3)


def test_base_cycle_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="include each other"):
        load_config(tmp_path / "a.yaml")


def test_overrides_are_yaml_typed_and_applied_last(tmp_path: Path) -> None:
    exp = write(tmp_path / "x.yaml", "solver: {lr: 0.1}\n")
    cfg = load_config(exp, ["solver.lr=2.5e-4", "solver.lr_steps=[3, 4]", "eval.flip=true", "data.classes=[a, b]"])
    assert cfg.solver.lr == pytest.approx(2.5e-4)
    assert cfg.solver.lr_steps == [3, 4]
    assert cfg.eval.flip is True
    assert cfg.data.classes == ["a", "b"]


def test_changing_type_starts_the_section_afresh(tmp_path: Path) -> None:
    exp = write(tmp_path / "x.yaml", "loss: {heatmap: {type: focal, gamma: 3.0, weight: 2.0}}\n")
    cfg = load_config(exp)
    assert cfg.loss.heatmap == FocalConfig(gamma=3.0, weight=2.0)
    cfg = load_config(exp, ["loss.heatmap.type=ghm_c", "loss.heatmap.bins=30"])
    assert cfg.loss.heatmap == GHMCConfig(bins=30)  # gamma/weight of the focal variant dropped


def test_type_change_elsewhere_keeps_the_other_keys(tmp_path: Path) -> None:
    exp = write(tmp_path / "x.yaml", "model: {neck: {type: deconv, channels: [128, 64, 64]}}\n")
    cfg = load_config(exp, ["model.neck.type=deconv_lateral"])
    assert (cfg.model.neck.type, cfg.model.neck.channels) == ("deconv_lateral", [128, 64, 64])


def test_unknown_key_names_the_key_and_suggests(tmp_path: Path) -> None:
    exp = write(tmp_path / "x.yaml", "solver: {lrr: 0.1}\n")
    with pytest.raises(ConfigError) as info:
        load_config(exp)
    message = str(info.value)
    assert "x.yaml" in message and "'solver.lrr'" in message and "did you mean 'solver.lr'" in message
    assert "\n" not in message


def test_unknown_override_key_and_per_type_parameters(tmp_path: Path) -> None:
    exp = write(tmp_path / "x.yaml", "")
    with pytest.raises(ConfigError, match=r"'runtime\.sed'.*did you mean 'runtime\.seed'"):
        load_config(exp, ["runtime.sed=1"])
    with pytest.raises(ConfigError, match=r"'loss\.heatmap\.gamma' for type 'ghm_c'"):
        load_config(exp, ["loss.heatmap.type=ghm_c", "loss.heatmap.gamma=2"])


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("solver.lr=abc", r"solver\.lr: expected a number, got str 'abc'"),
        ("solver.epochs=1.5", r"solver\.epochs: expected an integer"),
        ("eval.flip=1", r"eval\.flip: expected true/false"),
        ("data.input_size=512", r"data\.input_size: expected a list"),
        ("data.input_size=[512, x]", r"data\.input_size\[1\]: expected an integer"),
        ("runtime.amp=fp32", r"runtime\.amp: 'fp32' is not one of \['off', 'fp16', 'bf16'\]"),
        ("loss.heatmap.type=focall", r"loss\.heatmap\.type: 'focall' is not one of .*did you mean 'focal'"),
    ],
)
def test_wrong_types_name_the_key_path(tmp_path: Path, override: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        load_config(write(tmp_path / "x.yaml", ""), [override])


def test_bad_override_syntax_and_bad_yaml(tmp_path: Path) -> None:
    exp = write(tmp_path / "x.yaml", "")
    with pytest.raises(ConfigError, match=r"not of the form dotted\.key=value"):
        load_config(exp, ["solver.lr"])
    broken = write(tmp_path / "broken.yaml", "solver: {lr: [1, 2\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path / "list.yaml", "- 1\n"))


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml"):
        load_config(tmp_path / "nope.yaml")
    write(tmp_path / "x.yaml", "_base_: missing_base.yaml\n")
    with pytest.raises(FileNotFoundError, match=r"missing_base\.yaml"):
        load_config(tmp_path / "x.yaml")


def test_exponent_without_dot_reads_as_a_number(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "x.yaml", "solver: {lr: 2e-3}\n"), ["solver.weight_decay=1e-4"])
    assert (cfg.solver.lr, cfg.solver.weight_decay) == (0.002, 0.0001)


def test_bare_off_reads_as_amp_off(tmp_path: Path) -> None:
    assert load_config(write(tmp_path / "x.yaml", "runtime: {amp: off}\n")).runtime.amp == "off"


def test_save_and_reload_round_trip(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "x.yaml", ""), ["loss.heatmap.type=ghm_c", "solver.lr=0.5"])
    save_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert yaml.safe_load((tmp_path / "resolved.yaml").read_text())["loss"]["heatmap"]["type"] == "ghm_c"


def test_merge_and_parse_helpers() -> None:
    assert parse_overrides(["a.b=1", "a.c=x", "d=[1, 2]"]) == {"a": {"b": 1, "c": "x"}, "d": [1, 2]}
    merged = merge_dicts({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": 3}, "l": [2]})
    assert merged == {"a": {"b": 3, "c": 2}, "l": [2]}
    assert merge_dicts({}, {}) == {}


EXPERIMENTS = EXPERIMENT_CONFIGS


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_every_shipped_experiment_config_loads(path: Path) -> None:
    load_config(path)


def test_free_form_mappings_round_trip_and_need_string_keys(tmp_path: Path) -> None:
    chain = "[{type: RandomRotate90, p: 0.5}, {type: HueSaturationValue, hue_shift_limit: [-10, 10]}]"
    cfg = load_config(write(tmp_path / "x.yaml", ""), [f"augment.albumentations={chain}", "eval.pr_iou=0.5"])
    assert cfg.augment.albumentations == [
        {"type": "RandomRotate90", "p": 0.5},
        {"type": "HueSaturationValue", "hue_shift_limit": [-10, 10]},
    ]
    save_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match=r"augment\.albumentations\[0\]: keys must be strings, got int 1"):
        load_config(write(tmp_path / "y.yaml", "augment: {albumentations: [{1: 2}]}\n"))
