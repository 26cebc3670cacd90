"""docs/reference.md is generated from the code (``python -m autoqvis.reference --write``): regenerating it gives
the file in the repository, and the generator covers every command, argument and configuration field."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from autoqvis.cli import build_parser
from autoqvis.config import Config
from autoqvis.config.loader import profiles
from autoqvis.reference import COMMAND, DOCS_PATH, field_docs, main, reference

ROOT = Path(__file__).resolve().parents[1]


def test_reference_is_current():
    expected = reference()
    current = (ROOT / DOCS_PATH).read_text()
    if current != expected:
        diff = difflib.unified_diff(
            current.splitlines(), expected.splitlines(), "in the repository", "generated", n=0
        )
        first = "\n".join(list(diff)[:12])
        raise AssertionError(f"{DOCS_PATH.as_posix()} is out of date; run: {COMMAND}\n{first}")


def test_reference_is_deterministic_and_has_no_machine_paths():
    text = reference()
    assert text == reference()
    assert str(ROOT) not in text and str(Path.home()) not in text
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", text), "no dates: the file must not change between runs"


def parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from parsers(sub)


def test_every_command_argument_and_field_is_in_it():
    text = reference()
    for parser in parsers(build_parser()):
        if parser.prog == "autoqvis":
            continue
        assert f"### `{parser.prog}`" in text or f"#### `{parser.prog}`" in text, parser.prog
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:  # hidden on purpose
                continue
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}" in text or f", {option}" in text, f"{parser.prog} {option}"
    for section in dataclasses.fields(Config):
        if not dataclasses.is_dataclass(getattr(Config(), section.name)):  # a top-level key such as device
            assert f"| `{section.name}` |" in text, section.name
            continue
        assert f"### {section.name}\n" in text
        for field in dataclasses.fields(getattr(Config(), section.name)):
            assert f"| `{section.name}.{field.name}` |" in text, f"{section.name}.{field.name}"
    for name in profiles():
        assert f"### `{name}`" in text


@dataclass(frozen=True)
class Example:
    """A section to read the comments of."""

    plain: int = 1
    trailing: int = 2  # said at the end of the line
    # said above the field,
    # over two lines
    above: float = 0.5  # and at its end
    # losses
    headed: bool = True
    # bounds: more than lo or less than hi
    lo: int = 0
    hi: int = 9


def test_field_docs_read_the_comments():
    docs = field_docs(Example, "example")
    assert docs == {
        "plain": "",
        "trailing": "said at the end of the line",
        "above": "said above the field, over two lines and at its end",
        "headed": "",
        "lo": "bounds: more than lo or less than hi",
        "hi": "see `example.lo`",
    }


def test_check_says_what_to_run(tmp_path, monkeypatch, capsys):
    import autoqvis.reference as ref

    (tmp_path / "docs").mkdir()
    monkeypatch.setattr(ref, "REPO_ROOT", tmp_path)
    assert main(["--check"]) == 1
    assert COMMAND in capsys.readouterr().err
    assert main(["--write"]) == 0
    assert (tmp_path / DOCS_PATH).read_text() == reference()
    assert main(["--check"]) == 0
