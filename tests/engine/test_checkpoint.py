"""Checkpoint files: atomic replacement, safe loading, clear errors."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch

from centernet.engine import checkpoint as checkpoint_module
from centernet.engine.checkpoint import CheckpointStore, load_checkpoint, model_state_from_checkpoint, save_checkpoint


def test_round_trip(tmp_path: Path) -> None:
    state = {"model": {"w": torch.arange(3.0)}, "epoch": 2, "rng": {"python": (3, (1, 2), None)}}
    save_checkpoint(state, tmp_path / "ckpt" / "last.pth")
    loaded = load_checkpoint(tmp_path / "ckpt" / "last.pth")
    assert torch.equal(loaded["model"]["w"], torch.arange(3.0)) and loaded["epoch"] == 2
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["last.pth"]  # no temp file left


def test_failed_write_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pth"
    save_checkpoint({"epoch": 1}, path)

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", disk_full)
    with pytest.raises(OSError, match=r"could not write checkpoint .*last\.pth: No space left on device"):
        save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]


def test_truncated_file_is_reported_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "last.pth"
    save_checkpoint({"model": {"w": torch.zeros(1000)}}, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"last\.pth is corrupt or not a checkpoint"):
        load_checkpoint(path)


def test_unsafe_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "payload": Path("/etc/passwd")}, path)  # an arbitrary class
    with pytest.raises(ValueError, match=r"evil\.pth is corrupt or not a checkpoint"):
        load_checkpoint(path)


def test_missing_file_and_missing_model_entry(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"absent\.pth"):
        load_checkpoint(tmp_path / "absent.pth")
    with pytest.raises(ValueError, match="has no 'model' weights"):
        model_state_from_checkpoint({"epoch": 1}, tmp_path / "x.pth")


def test_store_keeps_the_newest_k_and_last_is_the_newest(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=2)
    for iteration in (3, 6, 9):
        store.save({"iteration": iteration}, iteration)
    assert [p.name for p in store.history()] == ["iter_000000009.pth", "iter_000000006.pth"]
    assert load_checkpoint(store.last)["iteration"] == 9
    assert store.last.read_bytes() == (tmp_path / "iter_000000009.pth").read_bytes()
    assert [p.name for p in store.candidates()] == ["last.pth", "iter_000000009.pth", "iter_000000006.pth"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iter_000000006.pth", "iter_000000009.pth", "last.pth"]


def test_store_disk_full_keeps_the_previous_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = CheckpointStore(tmp_path, keep=2)
    store.save({"iteration": 1}, 1)

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", disk_full)
    with pytest.raises(OSError, match=r"could not write checkpoint .*iter_000000002\.pth: No space left on device"):
        store.save({"iteration": 2}, 2)
    monkeypatch.undo()
    assert load_checkpoint(store.last)["iteration"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iter_000000001.pth", "last.pth"]


def test_store_load_latest_skips_corrupt_files_and_reports_an_empty_folder(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=3)
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from in"):
        store.load_latest()
    store.save({"iteration": 1}, 1)
    store.save({"iteration": 2}, 2)
    store.last.write_bytes(b"")  # truncated in place: also the newest iter file (the same file)
    state, path = store.load_latest()
    assert state["iteration"] == 1 and path.name == "iter_000000001.pth"
    with pytest.raises(ValueError, match=r"runtime\.keep_checkpoints must be >= 1, got 0"):
        CheckpointStore(tmp_path, keep=0)
