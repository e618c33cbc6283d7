"""Experiment configuration: YAML files with ``_base_`` inheritance, overrides and a strict schema."""

from centernet.config.loader import (
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    merge_dicts,
    parse_overrides,
    save_config,
)
from centernet.config.schema import Config

__all__ = [
    "Config",
    "ConfigError",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "merge_dicts",
    "parse_overrides",
    "save_config",
]
