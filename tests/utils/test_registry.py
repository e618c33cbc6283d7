"""Tests for centernet.utils.registry."""

from __future__ import annotations

import pytest

from centernet.models import BACKBONES, NECKS
from centernet.utils.registry import Registry, UnknownNameError


def test_register_and_lookup_round_trip() -> None:
    registry: Registry = Registry("widget")

    @registry.register("square")
    def square(x: int) -> int:
        return x * x

    assert registry["square"] is square
    assert registry["square"](3) == 9
    assert list(registry) == ["square"]
    assert registry.kind == "widget"


def test_duplicate_registration_is_an_error() -> None:
    registry: Registry = Registry("widget")
    registry.register("a")(int)
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        registry.register("a")(float)


def test_unknown_name_lists_valid_names_and_suggests() -> None:
    registry: Registry = Registry("widget")
    for name in ("alpha", "beta", "gamma"):
        registry.register(name)(int)
    with pytest.raises(KeyError) as info:
        registry["alpah"]
    message = str(info.value)
    assert isinstance(info.value, UnknownNameError)
    assert message == "unknown widget 'alpah': valid names are alpha, beta, gamma; did you mean alpha?"
    assert "\n" not in message


def test_empty_registry_error() -> None:
    registry: Registry = Registry("widget")
    with pytest.raises(UnknownNameError, match=r"valid names are \(none registered\)$"):
        registry["anything"]
    assert registry.get("anything") is None  # dict.get keeps its usual meaning


def test_builtin_components_are_registered() -> None:
    assert {"resnet18", "resnet34", "resnet50", "resnet101", "efficientnet_lite0", "dla34", "hourglass104"} <= set(
        BACKBONES
    )
    assert {"deconv", "deconv_lateral", "dcn_deconv", "ida_up", "identity"} <= set(NECKS)
    with pytest.raises(KeyError, match="resnet18, resnet34, resnet50"):
        BACKBONES["resnet19"]
