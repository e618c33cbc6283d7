"""tools/train.py argument parsing: `--resume` takes an optional PATH but never swallows a KEY=VALUE override."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import load_script


def test_resume_followed_by_an_override_resumes_from_last_and_keeps_the_override() -> None:
    train = load_script("tools/train.py")
    args = train.parse_args(["--config", "c.yaml", "--resume", "runtime.amp=off", "solver.lr=0.1"])
    assert args.resume is True
    assert args.overrides == ["runtime.amp=off", "solver.lr=0.1"]


def test_resume_with_a_path_and_without_one(tmp_path: Path) -> None:
    train = load_script("tools/train.py")
    checkpoint = tmp_path / "epoch=3.pth"  # an existing file whose name holds '=' is still a path
    checkpoint.write_bytes(b"")
    assert train.parse_args(["--config", "c.yaml", "--resume", str(checkpoint)]).resume == str(checkpoint)
    assert train.parse_args(["--config", "c.yaml", "--resume"]).resume is True
    assert train.parse_args(["--config", "c.yaml"]).resume is None
