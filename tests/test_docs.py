"""The README and docs/ stay current: every command in their bash blocks parses, every path and link exists.

Running the commands would take hours; parsing them catches renamed tools, options, config keys and files.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import re
import shlex
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import pytest

from centernet.config import Config
from tests.conftest import REPO, load_script

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "datasets" / "README.md"]
README_LIMIT_BYTES = 12 * 1024
GENERATED = ("datasets/data/", "work_dirs/")  # written by the commands themselves, git-ignored
PLACEHOLDER = re.compile(r"[<>*{}…]|\.\.\.")
REPO_PATH = re.compile(r"`((?:configs|tools|centernet|datasets|docs|benchmarks|tests)/[^`\s]*)`")
MODULE_PATH = re.compile(r"`(centernet(?:\.\w+)+)")
LINK = re.compile(r"\]\(([^)\s]+)\)")
PYTHONS = ("python", ".venv/bin/python")
TORCHRUNS = ("torchrun", ".venv/bin/torchrun")


def bash_commands(path: Path) -> list[str]:
    """The command lines of the ```bash blocks of a Markdown file (continuation lines joined)."""
    commands, block = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            block = [] if line.strip() == "```bash" and block is None else None
            continue
        if block is not None:
            if commands and commands[-1].endswith("\\"):
                commands[-1] = commands[-1][:-1] + " " + line.strip()
            elif line.strip():
                commands.append(line.strip())
    return commands


ALL_COMMANDS = [(path.relative_to(REPO), command) for path in DOCUMENTS for command in bash_commands(path)]


def makefile_names() -> tuple[set[str], set[str]]:
    """Targets and variables of the Makefile."""
    text = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", text, flags=re.MULTILINE))
    variables = set(re.findall(r"^(\w+)\s*[?:]?=", text, flags=re.MULTILINE))
    return targets, variables


def schema_has_key(dotted: str) -> bool:
    """Whether ``dotted`` names a key of the config schema (any variant of a tagged union)."""
    options: list[Any] = [Config]
    for part in dotted.split("."):
        fields = {}
        for option in options:
            if dataclasses.is_dataclass(option):
                fields.update(get_type_hints(option))
        if part not in fields:
            return False
        annotation = fields[part]
        union = get_origin(annotation) in (Union, types.UnionType)
        options = list(get_args(annotation)) if union else [annotation]
    return True


class Parsed(Exception):  # noqa: N818 (a signal, not an error)
    """Raised instead of running a script once its arguments parsed."""


def parse_script_args(script: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    """Parse ``args`` with the script's own parser (its ``parse_args`` where it has one, as tools do; others: stop
    ``main`` after parsing)."""
    module = load_script(script)
    if script.startswith("tools/") or hasattr(module, "parse_args"):
        return module.parse_args(args)
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self: argparse.ArgumentParser, *parse_args: Any, **kwargs: Any) -> None:
        raise Parsed(original(self, *parse_args, **kwargs))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    with pytest.raises(Parsed) as parsed:
        module.main(args)
    return parsed.value.args[0]


def check_python_command(words: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    script, args = words[0], words[1:]
    assert (REPO / script).is_file(), f"{script} does not exist"
    try:
        namespace = parse_script_args(script, args, monkeypatch)
    except SystemExit as error:
        pytest.fail(f"{script} refuses {args} (exit {error.code})")
    for key in (item.partition("=")[0] for item in getattr(namespace, "overrides", None) or []):
        assert schema_has_key(key), f"override key {key} is not in the config schema"
    for word in args:
        if word.endswith(".yaml") and not word.startswith(GENERATED):
            assert (REPO / word).is_file(), f"config {word} does not exist"


@pytest.mark.parametrize(("document", "command"), ALL_COMMANDS, ids=[f"{d}:{c[:60]}" for d, c in ALL_COMMANDS])
def test_documented_commands_parse(document: Path, command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    words = shlex.split(command, comments=True)
    program, rest = words[0], words[1:]
    if program == "make":
        targets, variables = makefile_names()
        assert all(w in targets or w.partition("=")[0] in variables for w in rest), f"unknown make target: {rest}"
    elif program in PYTHONS:
        check_python_command(rest, monkeypatch)
    elif program in TORCHRUNS:
        script_at = next(i for i, word in enumerate(rest) if word.endswith(".py"))
        check_python_command(rest[script_at:], monkeypatch)
    elif program == ".venv/bin/tensorboard":
        assert rest[0] == "--logdir" and len(rest) == 2
    else:
        pytest.fail(f"{document}: unknown program {program!r} in {command!r}")


def test_readme_starts_with_the_two_commands_and_stays_short() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.encode()) < README_LIMIT_BYTES
    first_lines = text.splitlines()[:4]
    assert first_lines[0] == "```bash" and first_lines[3] == "```"
    assert [line.split()[:2] for line in first_lines[1:3]] == [["make", "demo"], ["make", "test"]]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_paths_modules_and_links_exist(document: Path) -> None:
    text = document.read_text(encoding="utf-8")
    for path in REPO_PATH.findall(text):
        if not PLACEHOLDER.search(path) and not path.startswith(GENERATED):
            assert (REPO / path.rstrip("/")).exists(), f"{document.name}: {path} does not exist"
    for dotted in MODULE_PATH.findall(text):
        assert resolves(dotted), f"{document.name}: {dotted} is neither a module nor an attribute of one"
    for link in LINK.findall(text):
        if link.startswith(("http://", "https://")):
            continue
        target, _, anchor = link.partition("#")
        file = (document.parent / target).resolve() if target else document
        assert file.exists(), f"{document.name}: link {link} points nowhere"
        if anchor and file.suffix == ".md":
            assert anchor in heading_anchors(file), f"{document.name}: no heading #{anchor} in {file.name}"


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for name in parts[split:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def heading_anchors(path: Path) -> set[str]:
    """The anchors a Markdown renderer gives the headings of ``path`` (lower case, punctuation dropped)."""
    anchors = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors
