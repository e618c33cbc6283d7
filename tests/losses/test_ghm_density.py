"""The shared GHM density options: ema_init='zero' and batch_then_epoch, hand-worked; config checks."""

from __future__ import annotations

import math

import pytest
import torch

from centernet.config import ConfigError, load_config
from centernet.config.schema import ghm_options_error
from centernet.losses import GHMC, GHMCenterNet
from tests.conftest import REPO
from tests.losses.test_ghm import G_A, G_B, Y_A, Y_B, _batch, _expected


def test_ema_init_zero_hand_computed() -> None:
    loss_fn = GHMC(bins=2, momentum=0.5, ema_init="zero")
    first = loss_fn(*_batch(G_A, Y_A))  # counts [4, 2]
    assert loss_fn.ema_counts.tolist() == [2.0, 1.0]  # 0.5 * 0 + 0.5 * count
    # w = N / (acc * n): 6 / (2 * 2), 6 / (1 * 2): 1 / (1 - 0.5) = 2 times the batch weights [0.75, 1.5]
    assert first.item() == pytest.approx(_expected(G_A, [1.5, 3.0]), rel=1e-5)
    second = loss_fn(*_batch(G_B, Y_B))  # counts [1, 5]
    assert loss_fn.ema_counts.tolist() == [1.5, 3.0]  # [0.5 * 2 + 0.5 * 1, 0.5 * 1 + 0.5 * 5]
    assert second.item() == pytest.approx(_expected(G_B, [6 / 1.5 / 2, 6 / 3.0 / 2]), rel=1e-5)


def test_ema_init_first_count_is_the_default_and_bit_identical() -> None:
    default, explicit = GHMC(bins=3, momentum=0.75), GHMC(bins=3, momentum=0.75, ema_init="first_count")
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        logits, target = torch.randn(2, 2, 5, 5, generator=gen), torch.rand(2, 2, 5, 5, generator=gen)
        assert torch.equal(default(logits, target), explicit(logits, target))
    assert torch.equal(default.ema_counts, explicit.ema_counts)
    assert set(default.state_dict()) == {"ema_counts", "epoch_counts", "previous_epoch_counts"}


def test_batch_then_epoch_fixed_switch() -> None:
    loss_fn = GHMC(bins=2, density="batch_then_epoch", switch_epoch=2)
    assert loss_fn(*_batch(G_A, Y_A)).item() == pytest.approx(_expected(G_A, [0.75, 1.5]), rel=1e-5)
    loss_fn.end_epoch(1.0)  # epoch 1 ended: still batch density
    assert int(loss_fn.switched_at_epoch) == 0 and loss_fn.record_fields() == {}
    assert loss_fn(*_batch(G_A, Y_A)).item() == pytest.approx(_expected(G_A, [0.75, 1.5]), rel=1e-5)
    loss_fn(*_batch(G_B, Y_B))  # epoch 2 histogram: [4, 2] + [1, 5] = [5, 7]
    loss_fn.end_epoch(0.1)  # a large improvement, but the switch epoch is fixed
    assert int(loss_fn.switched_at_epoch) == 2 and loss_fn.record_fields() == {"ghm_switch_epoch": 2}
    # epoch 3: the epoch density 12 / (5 * 2), 12 / (7 * 2), as for density="epoch"
    assert loss_fn(*_batch(G_A, Y_A)).item() == pytest.approx(_expected(G_A, [1.2, 12 / 14]), rel=1e-5)
    loss_fn.end_epoch(5.0)
    assert int(loss_fn.switched_at_epoch) == 2  # switched once, for good


def test_batch_then_epoch_automatic_switch_and_resume() -> None:
    loss_fn = GHMC(bins=2, density="batch_then_epoch", switch_tolerance=0.1)
    loss_fn(*_batch(G_A, Y_A))
    loss_fn.end_epoch(2.0)  # epoch 1: nothing to compare with
    loss_fn(*_batch(G_A, Y_A))
    loss_fn.end_epoch(None)  # no loss given: never switches
    loss_fn(*_batch(G_A, Y_A))
    loss_fn.end_epoch(1.0)  # previous unknown (None): no switch
    loss_fn(*_batch(G_A, Y_A))
    loss_fn.end_epoch(0.8)  # (1.0 - 0.8) / 1.0 = 0.2 >= 0.1: keeps improving
    assert int(loss_fn.switched_at_epoch) == 0 and int(loss_fn.epochs_ended) == 4
    loss_fn(*_batch(G_B, Y_B))  # epoch 5 histogram [1, 5]
    state = loss_fn.state_dict()
    assert {"switched_at_epoch", "epochs_ended", "last_epoch_loss"} <= set(state)
    resumed = GHMC(bins=2, density="batch_then_epoch", switch_tolerance=0.1)
    resumed.load_state_dict(state)  # a resume mid-epoch 5
    resumed.end_epoch(0.75)  # (0.8 - 0.75) / 0.8 = 0.0625 < 0.1: switch after epoch 5
    assert int(resumed.switched_at_epoch) == 5 and resumed.record_fields() == {"ghm_switch_epoch": 5}
    assert resumed(*_batch(G_A, Y_A)).item() == pytest.approx(_expected(G_A, [6 / 1 / 2, 6 / 5 / 2]), rel=1e-5)


def test_batch_then_epoch_switches_when_the_loss_gets_worse() -> None:
    loss_fn = GHMCenterNet(bins=2, density="batch_then_epoch", switch_tolerance=0.0)
    loss_fn.end_epoch(1.0)
    loss_fn.end_epoch(1.0)  # improvement 0 is not < 0
    assert int(loss_fn.switched_at_epoch) == 0
    loss_fn.end_epoch(1.5)
    assert int(loss_fn.switched_at_epoch) == 3
    assert not math.isnan(float(loss_fn.last_epoch_loss))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bins": 0}, "bins must be an integer >= 1"),
        ({"ema_init": "one"}, "ema_init must be one of"),
        ({"ema_init": "zero"}, "ema_init='zero' needs density='ema'"),
        ({"density": "batch_then_epoch", "switch_epoch": -1}, "switch_epoch must be an integer >= 0"),
        ({"density": "epoch", "switch_epoch": 2}, "switch_epoch=2 needs density='batch_then_epoch'"),
        ({"density": "batch_then_epoch", "switch_tolerance": -0.5}, "switch_tolerance must be >= 0"),
        ({"density": "batch_then_epoch", "momentum": 0.5}, "density='ema' needs 0 < momentum < 1"),
    ],
)
def test_invalid_options(options: dict, message: str) -> None:
    full = {"bins": 10, "momentum": 0.0, "density": "batch", "ema_init": "first_count", "switch_epoch": 0,
            "switch_tolerance": 0.01, **options}
    assert message in (ghm_options_error(**full) or "")
    with pytest.raises(ValueError, match="GHMCenterNet: " + message.split("'")[0]):
        GHMCenterNet(**full)


def test_config_keys_are_validated() -> None:
    base = REPO / "configs" / "shapes_resnet18.yaml"
    cfg = load_config(base, ["loss.heatmap.type=ghm_centernet", "loss.heatmap.density=batch_then_epoch",
                             "loss.heatmap.switch_epoch=3"])
    assert (cfg.loss.heatmap.type, cfg.loss.heatmap.switch_epoch, cfg.loss.heatmap.beta) == ("ghm_centernet", 3, 4.0)
    with pytest.raises(ConfigError, match=r"loss.heatmap \(ghm_c\): ema_init='zero' needs density='ema'"):
        load_config(base, ["loss.heatmap.type=ghm_c", "loss.heatmap.ema_init=zero"])
    with pytest.raises(ConfigError, match="switch_epoch=2 needs density='batch_then_epoch'"):
        load_config(base, ["loss.heatmap.type=ghm_c", "loss.heatmap.switch_epoch=2"])
