"""Tests for centernet.data.collate: padding, empty batches, the max_objects cap and pickling."""

from __future__ import annotations

import logging
import pickle

import pytest
import torch

from centernet.data import collate as collate_module
from centernet.data.collate import DetectionCollate, collate_detection_batch, make_collate


def _sample(num_boxes: int, offset: float = 0.0, size: tuple[int, int] = (8, 10)) -> dict:
    """A sample with ``num_boxes`` distinct boxes, labels 0..N-1 and every other box ignored."""
    boxes = torch.arange(num_boxes * 4, dtype=torch.float32).reshape(num_boxes, 4) + offset
    return {
        "image": torch.full((3, *size), int(offset) % 256, dtype=torch.uint8),
        "boxes": boxes,
        "labels": torch.arange(num_boxes, dtype=torch.int64),
        "ignore": torch.arange(num_boxes) % 2 == 1,
        "meta": {"id": int(offset)},
    }


@pytest.fixture
def fresh_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reset the once-per-process truncation warning flag."""
    monkeypatch.setattr(collate_module, "_warned_truncation", False)


def test_collate_hand_computed_padding() -> None:
    batch = collate_detection_batch([_sample(2, offset=1.0), _sample(0, offset=2.0), _sample(1, offset=3.0)])
    assert batch["images"].shape == (3, 3, 8, 10) and batch["images"].dtype == torch.uint8
    assert batch["images"][:, 0, 0, 0].tolist() == [1, 2, 3]
    assert batch["boxes"].shape == (3, 2, 4) and batch["boxes"].dtype == torch.float32
    assert batch["boxes"].tolist() == [
        [[1, 2, 3, 4], [5, 6, 7, 8]],
        [[0, 0, 0, 0], [0, 0, 0, 0]],
        [[3, 4, 5, 6], [0, 0, 0, 0]],
    ]
    assert batch["labels"].dtype == torch.int64
    assert batch["labels"].tolist() == [[0, 1], [-1, -1], [0, -1]]
    assert batch["valid"].tolist() == [[True, True], [False, False], [True, False]]
    assert batch["ignore"].tolist() == [[False, True], [False, False], [False, False]]
    assert [m["id"] for m in batch["metas"]] == [1, 2, 3]


def test_collate_round_trip_recovers_samples() -> None:
    samples = [_sample(n, offset=float(i)) for i, n in enumerate([3, 1, 4])]
    batch = collate_detection_batch(samples)
    for i, sample in enumerate(samples):
        valid = batch["valid"][i]
        torch.testing.assert_close(batch["boxes"][i][valid], sample["boxes"])
        torch.testing.assert_close(batch["labels"][i][valid], sample["labels"])
        torch.testing.assert_close(batch["ignore"][i][valid], sample["ignore"])
        torch.testing.assert_close(batch["images"][i], sample["image"])


def test_collate_all_empty() -> None:
    batch = collate_detection_batch([_sample(0), _sample(0)])
    assert batch["boxes"].shape == (2, 0, 4)
    assert batch["labels"].shape == (2, 0) and batch["labels"].dtype == torch.int64
    assert batch["valid"].shape == (2, 0) and batch["ignore"].shape == (2, 0)
    assert batch["images"].shape == (2, 3, 8, 10)


def test_collate_accepts_flat_empty_boxes() -> None:
    sample = _sample(0)
    sample["boxes"] = torch.zeros(0)
    assert collate_detection_batch([sample])["boxes"].shape == (1, 0, 4)


def test_max_objects_cap_warns_once(fresh_warning: None, caplog: pytest.LogCaptureFixture) -> None:
    collate = make_collate(3)
    with caplog.at_level(logging.WARNING, logger="centernet.data.collate"):
        batch = collate([_sample(5), _sample(2)])
        collate([_sample(7)])
    assert batch["boxes"].shape == (2, 3, 4)
    torch.testing.assert_close(batch["boxes"][0], _sample(5)["boxes"][:3])  # the first ones are kept
    assert batch["labels"][0].tolist() == [0, 1, 2]
    assert batch["valid"][1].tolist() == [True, True, False]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "5 objects" in warnings[0].getMessage() and "first 3" in warnings[0].getMessage()


def test_max_objects_no_warning_below_cap(fresh_warning: None, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="centernet.data.collate"):
        batch = make_collate(3)([_sample(3), _sample(0)])
    assert batch["boxes"].shape == (2, 3, 4)
    assert not caplog.records


def test_collate_is_picklable_and_works_in_a_dataloader() -> None:
    collate = pickle.loads(pickle.dumps(make_collate(2)))
    assert isinstance(collate, DetectionCollate) and collate.max_objects == 2
    samples = [_sample(1, offset=1.0), _sample(0, offset=2.0), _sample(2, offset=3.0)]
    loader = torch.utils.data.DataLoader(samples, batch_size=2, collate_fn=make_collate(None))
    batches = list(loader)
    assert [b["boxes"].shape for b in batches] == [(2, 1, 4), (1, 2, 4)]


def test_collate_errors_name_the_sample() -> None:
    with pytest.raises(ValueError, match="empty list"):
        collate_detection_batch([])
    with pytest.raises(ValueError, match="sample 1 image has shape"):
        collate_detection_batch([_sample(1), _sample(1, size=(8, 12))])
    missing = _sample(1)
    del missing["ignore"]
    with pytest.raises(KeyError, match="sample 0 lacks keys"):
        collate_detection_batch([missing])
    mismatched = _sample(2)
    mismatched["labels"] = torch.zeros(3, dtype=torch.int64)
    with pytest.raises(ValueError, match="sample 0 has 2 boxes, 3 labels"):
        collate_detection_batch([mismatched])
    float_image = _sample(1)
    float_image["image"] = float_image["image"].float()
    with pytest.raises(ValueError, match=r"torch\.uint8"):
        collate_detection_batch([float_image])
    with pytest.raises(ValueError, match="max_objects"):
        make_collate(0)
