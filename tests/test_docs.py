"""Every ``autoqvis`` command line in the reproduction guide and the profiles names a real command and only its
real flags."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from autoqvis.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def command_lines(text: str) -> list[str]:
    """``autoqvis ...`` / ``-m autoqvis ...`` invocations, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*(#\s*)?", " ", text)  # join "\" continuations (also inside YAML comments)
    text = text.replace("\\|", "/")  # a "|" escaped in a Markdown table cell
    lines = []
    for line in text.splitlines():
        line = line.split(" #")[0].strip().lstrip("#").strip()
        for match in re.finditer(r"(?:^|-m |[\s`(])autoqvis (\w[\w-]*)(?![\w:-])([^`|)]*)", line):
            lines.append(f"{match.group(1)}{match.group(2)}")
    return lines


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


SOURCES = [
    ROOT / "docs" / "reproduce.md",
    ROOT / "README.md",
    *sorted((ROOT / "autoqvis" / "configs").glob("*.yaml")),
]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_guide_commands_use_real_flags(path):
    commands = subcommands()
    lines = command_lines(path.read_text())
    assert path.suffix == ".yaml" or len(lines) >= 8, f"found only {lines}"
    for line in lines:
        words = line.split()
        name = words[0]
        assert name in commands, f"{path.name}: unknown command in {line!r}"
        parser = commands[name]
        if name == "weights":  # weights <action> ...
            sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            parser = sub.choices[words[1]]
        known = {s for a in parser._actions for s in a.option_strings}
        flags = re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", " ".join(words[1:]))
        unknown = [f for f in flags if f not in known]
        assert not unknown, f"{path.name}: {name} has no {unknown} (in {line!r})"
