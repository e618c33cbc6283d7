"""centernet.cli: the shared parser keeps KEY=VALUE overrides out of greedy options; run_tool's error policy."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from centernet.cli import EXIT_ERROR, EXIT_OK, USER_ERRORS, default_argument_parser, run_tool, setup_tool_logging
from centernet.config import ConfigError
from centernet.utils.registry import Registry
from tests.conftest import load_script

logger = logging.getLogger("centernet.tests.cli")


def tool_parser():
    parser = default_argument_parser("a tool")
    parser.add_argument("--resume", nargs="?", const=True, default=None)
    parser.add_mutually_exclusive_group().add_argument("--scales", nargs="+")  # options of groups count too
    parser.add_argument("--output")
    return parser


def test_overrides_swallowed_by_greedy_options_come_back_in_command_line_order() -> None:
    args = tool_parser().parse_tool_args(
        ["a.x=1", "--config", "c.yaml", "--scales", "0.5", "1", "b.y=2", "--resume", "c.z=3", "d.w=4"]
    )
    assert args.scales == ["0.5", "1"] and args.resume is True
    assert args.overrides == ["a.x=1", "b.y=2", "c.z=3", "d.w=4"]


def test_single_value_options_and_existing_paths_keep_their_equals_sign(tmp_path: Path) -> None:
    existing = tmp_path / "epoch=3.pth"
    existing.write_bytes(b"")
    args = tool_parser().parse_tool_args(
        ["--config", "c.yaml", "--output", "runs/lr=0.1", "--resume", str(existing), "solver.lr=0.1"]
    )
    assert args.output == "runs/lr=0.1" and args.resume == str(existing)
    assert args.overrides == ["solver.lr=0.1"]


def test_an_option_left_without_values_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        tool_parser().parse_tool_args(["--config", "c.yaml", "--scales", "eval.merge=nms"])
    assert caught.value.code == 2
    assert "--scales: expected at least one value before eval.merge=nms" in capsys.readouterr().err


def test_ablate_lists_give_back_their_overrides() -> None:
    ablate = load_script("tools/ablate.py")
    args = ablate.parse_args(["--configs", "a.yaml", "solver.epochs=2", "--seeds", "0", "1", "eval.interval=1"])
    assert args.configs == ["a.yaml"] and args.seeds == [0, 1]
    assert args.overrides == ["solver.epochs=2", "eval.interval=1"]


def error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line]


def raise_(error: BaseException):
    def body() -> None:
        raise error

    return body


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("tiny.yaml: unknown config key 'solver.lrr'"),
        FileNotFoundError("config file not found: absent.yaml"),
        OSError(28, "No space left on device"),
        RuntimeError("runtime.device='cuda' but no CUDA device is available"),
        FloatingPointError("non-finite loss at epoch 1"),
        TypeError("heatmap loss 'focal' got unknown parameter(s) ['bins']"),
    ],
)
def test_user_errors_become_one_line_and_exit_code_1(error: BaseException,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    setup_tool_logging(None)
    assert isinstance(error, USER_ERRORS)
    assert run_tool(raise_(error), logger) == EXIT_ERROR
    lines = error_lines(capsys)
    assert len(lines) == 1 and lines[0].endswith(str(error).strip())
    assert "Traceback" not in capsys.readouterr().err


def test_a_registry_key_error_shows_its_message_unquoted(capsys: pytest.CaptureFixture[str]) -> None:
    setup_tool_logging(None)
    backbones: Registry[object] = Registry("backbone")

    def lookup() -> None:
        backbones["resnet"]

    assert run_tool(lookup, logger) == EXIT_ERROR
    (line,) = error_lines(capsys)
    assert line.endswith("unknown backbone 'resnet': valid names are (none registered)")
    key_error = KeyError("plain message")
    assert run_tool(raise_(key_error), logger) == EXIT_ERROR
    assert error_lines(capsys)[0].endswith(" plain message")


def test_exit_codes_cleanup_and_bugs_keep_their_traceback() -> None:
    calls: list[str] = []
    assert run_tool(lambda: None, logger, cleanup=lambda: calls.append("ok")) == EXIT_OK
    assert run_tool(lambda: 3, logger) == 3
    with pytest.raises(ZeroDivisionError):
        run_tool(lambda: 1 // 0, logger, cleanup=lambda: calls.append("bug"))
    assert calls == ["ok", "bug"]
