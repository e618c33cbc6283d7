"""Loading never runs code from a file: YAML through ``yaml.safe_load``, checkpoints with ``weights_only``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from centernet.config import ConfigError, load_config

PAYLOAD = "!!python/object/apply:os.system ['touch {marker}']"


def test_python_tags_in_a_config_file_are_refused(tiny_config: Callable[..., Path], tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    config = tiny_config(f"runtime: {{seed: {PAYLOAD.format(marker=marker)}}}\n", name="evil.yaml")
    with pytest.raises(ConfigError, match=r"evil\.yaml: not valid YAML"):
        load_config(config)
    assert not marker.exists()


def test_python_tags_in_an_override_are_refused(tiny_config: Callable[..., Path], tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    with pytest.raises(ConfigError, match=r"override \"runtime\.seed=.*value is not valid YAML .*python/object"):
        load_config(tiny_config(), [f"runtime.seed={PAYLOAD.format(marker=marker)}"])
    assert not marker.exists()
