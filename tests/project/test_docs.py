"""The docs show only what exists: every ``crashwatch`` command in the README and ``docs/`` is a real command,
every option written after it is one of its options, and docs/monitor.md names every option of the monitor."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from crashwatch.cli import main
from tests.support.shared import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
SPAN = re.compile(r"`(crashwatch [^`\n]+)`")


def _commands(page: Path) -> list[str]:
    """The ``crashwatch ...`` command lines a page shows: in code blocks (continuation lines joined) and in code
    spans."""
    text = page.read_text(encoding="utf-8")
    found = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            for part in re.split(r"\s*(?:&&|\|\||;|\|)\s*", line):
                words = part.split()
                if "crashwatch" in words[:3]:
                    found.append(" ".join(words[words.index("crashwatch"):]))
    found += SPAN.findall(text)
    return found


def _resolve(words: list[str]) -> tuple[click.Command, list[str], str]:
    """The command the words name, the words after it, and its name as typed."""
    command: click.Command = main
    path = ["crashwatch"]
    rest = words[1:]
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.commands.get(rest[0])
        if sub is None:
            if rest[0].isupper() or not rest[0].isidentifier():  # a placeholder: the group itself is shown
                break
            raise AssertionError(f"`{' '.join(path)} {rest[0]}` is not a command")
        command, path, rest = sub, [*path, rest[0]], rest[1:]
    return command, rest, " ".join(path)


def _options(command: click.Command) -> set[str]:
    names = {"--help", "-h"}
    for param in command.params:
        names.update(param.opts)
        names.update(param.secondary_opts)
    return names


SHOWN = [(page, line) for page in PAGES for line in _commands(page)]


def test_the_docs_show_commands():
    assert len(SHOWN) > 50, "the pages' commands were not found: has the markup changed?"
    assert {page.name for page, _ in SHOWN} >= {"README.md", "monitor.md", "training.md", "export.md"}


@pytest.mark.parametrize("page,line", SHOWN, ids=[f"{p.name}:{line[:60]}" for p, line in SHOWN])
def test_every_command_the_docs_show_exists_with_the_options_they_name(page, line):
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        words = line.split()
    command, rest, name = _resolve(words)
    if "--" in rest and name == "crashwatch service install":  # what follows `--` is the monitor's
        at = rest.index("--")
        rest, passed = rest[:at], rest[at + 1:]
        _check_flags(page, line, passed, main.commands["monitor"], "crashwatch monitor (after --)")
    _check_flags(page, line, rest, command, name)


def _check_flags(page, line: str, words: list[str], command, name: str) -> None:
    known = _options(command)
    for word in words:
        flag = word.split("=", 1)[0]
        if flag.startswith("--") and len(flag) > 2:
            assert flag in known, f"{page.name}: `{line}`: {name} has no option {flag}"


def test_the_monitor_page_names_every_option_of_the_monitor():
    text = (REPO / "docs" / "monitor.md").read_text(encoding="utf-8")
    missing = [opt for opt in sorted(_options(main.commands["monitor"])) if opt.startswith("--") and opt != "--help"
               and not re.search(rf"`{re.escape(opt)}\b", text)]
    assert not missing, f"docs/monitor.md does not name {missing}"


def test_the_fleet_page_names_every_key_of_a_cameras_file_beside_its_option():
    from crashwatch.monitor.pipeline.options import SETTINGS
    from crashwatch.monitor.serving.options import SERVE_SETTINGS

    rows = [line for line in (REPO / "docs" / "fleet.md").read_text(encoding="utf-8").splitlines()
            if line.startswith("| `")]
    for setting in (*SETTINGS, *SERVE_SETTINGS):
        if not setting.key:
            continue
        leaf = setting.key.rsplit(".", 1)[-1]
        assert any(f"`{leaf}`" in row or f"].{leaf}`" in row for row in rows
                   if not setting.flag or f"`{setting.flag}`" in row), \
            f"docs/fleet.md has no row naming {setting.key} with {setting.flag or 'its meaning'}"


def test_the_negative_control_catches_an_option_that_does_not_exist():
    command, rest, name = _resolve(shlex.split("crashwatch monitor --source 0 --no-such-option"))
    assert name == "crashwatch monitor" and "--no-such-option" not in _options(command)
    with pytest.raises(AssertionError, match="is not a command"):
        _resolve(["crashwatch", "frobnicate"])
