"""The documentation says what the code does and stays inside the repository.

- Every ``autoqvis`` command line in README.md, docs/*.md and the profiles names a real command and only its
  real flags; every ``--config NAME`` it passes is a shipped profile (or a file path) and every configuration
  key the text names (``--set section.key=...``, `` `section.key` ``) is a real key.
- Nothing in README.md or docs/ points outside the repository: no ``../shared``, no absolute path of a machine,
  no web link; every relative link and every repository path the text names exists (and a link's ``#anchor``
  is a heading of its target).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from autoqvis.cli import build_parser
from autoqvis.config import all_keys, profiles
from autoqvis.config.loader import MOVED

ROOT = Path(__file__).resolve().parents[1]
MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PROFILES = sorted((ROOT / "autoqvis" / "configs").glob("*.yaml"))
# Paths that the branch reorganising bench/ adds (bench/speed/, bench/studies/, their index and
# docs/benchmarks.md). Until that branch is merged they are missing here and a path to them is not checked;
# once they exist, every path to them is checked like any other.
# the least number of command lines a file quotes (a parser that finds none checks nothing)
MIN_COMMANDS = {"README.md": 4, "docs/guide.md": 8, "docs/reproduce.md": 8, "docs/reference.md": 8}


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


def quoted_code(markdown: str) -> str:
    """The code of a Markdown text: its fenced blocks, and each inline code span on a line of its own (a
    command is quoted as code; prose such as "installs autoqvis into .venv" is not one)."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", markdown, flags=re.S | re.M)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", markdown, flags=re.S | re.M)
    spans = re.findall(r"`([^`\n]+)`", prose.replace("\\|", "/"))
    return "\n".join([*blocks, *spans])


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", [*MARKDOWN, *PROFILES], ids=relative)
def test_quoted_commands_use_real_flags_and_profiles(path):
    commands = subcommands()
    text = path.read_text()
    lines = command_lines(quoted_code(text) if path.suffix == ".md" else text)
    assert len(lines) >= MIN_COMMANDS.get(relative(path), 0), f"found only {lines}"
    shipped = set(profiles())
    for line in lines:
        words = line.split()
        name = words[0]
        if name.isupper():
            continue  # a placeholder: autoqvis COMMAND ...
        assert name in commands, f"{relative(path)}: unknown command in {line!r}"
        parser = commands[name]
        if (
            name == "weights" and len(words) > 1 and re.fullmatch(r"[a-z][\w-]*", words[1])
        ):  # weights <action> ...
            sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            assert words[1] in sub.choices, (
                f"{relative(path)}: weights has no action {words[1]!r} (in {line!r})"
            )
            parser = sub.choices[words[1]]
        known = {s for a in parser._actions for s in a.option_strings}
        flags = re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", " ".join(words[1:]))
        unknown = [f for f in flags if f not in known]
        assert not unknown, f"{relative(path)}: {name} has no {unknown} (in {line!r})"
        for value in re.findall(r"--config[ =](\S+)", line):
            if "/" in value or value.endswith((".yaml", ".yml")) or not value.islower():
                continue  # a file path, or a placeholder such as FILE or F
            assert value in shipped, (
                f"{relative(path)}: --config {value} is no shipped profile ({sorted(shipped)})"
            )


SECTIONS = sorted({key.split(".")[0] for key in all_keys()})
KEY = re.compile(rf"^({'|'.join(SECTIONS)})\.([a-z_]+)(=\S*)?$")
FILE_SUFFIXES = ("json", "yaml", "safetensors", "pth", "jsonl")  # `model.json` is a file, not a key


def named_keys(text: str) -> list[str]:
    """Configuration keys the text names: after ``--set`` and as a whole `` `section.key[=value]` ``."""
    keys = [k for k in re.findall(r"--set[ =]([a-z_]+\.[a-z_]+)=", text) if k.split(".")[0] in SECTIONS]
    for token in re.findall(r"`([^`\n]+)`", text):
        match = KEY.match(token)
        if match and match.group(2) not in FILE_SUFFIXES:
            keys.append(f"{match.group(1)}.{match.group(2)}")
    return keys


@pytest.mark.parametrize("path", MARKDOWN, ids=relative)
def test_named_config_keys_exist(path):
    valid = set(all_keys())
    text = path.read_text()
    # an old key is named only where the text says it moved (the reference's table, the error it gives)
    unknown = [k for k in named_keys(text) if k not in valid and not (k in MOVED and "moved" in text)]
    assert not unknown, f"{relative(path)} names configuration keys that do not exist: {sorted(set(unknown))}"


def slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("path", MARKDOWN, ids=relative)
def test_nothing_points_outside_the_repository(path):
    text = path.read_text()
    name = relative(path)
    assert "../shared" not in text, f"{name} sends the reader to ../shared, which a clone does not have"
    machine = re.findall(r"(?<![\w.~$])/(?:home|work|tmp|Users|root|mnt|data|opt|var|scratch)/[\w./-]*", text)
    assert not machine, f"{name} holds absolute paths of a machine: {machine}"
    web = re.findall(r"https?://\S+", text)
    assert not web, f"{name} links outside the repository: {web}"
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        assert resolved.is_relative_to(ROOT), f"{name}: the link {target} leaves the repository"
        in_repo = resolved.relative_to(ROOT).as_posix()
        assert resolved.exists(), f"{name}: the link {target} names {in_repo}, which does not exist"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{name}: {in_repo} has no heading for #{anchor}"


@pytest.mark.parametrize("path", [p for p in MARKDOWN if p.name != "reference.md"], ids=relative)
def test_repository_paths_named_exist(path):
    """Paths such as ``bench/studies/davis.py`` or ``autoqvis/configs/`` name files of this repository.
    (reference.md is left out: its text is the code's own, generated, and checked by test_reference.py.)"""
    text = path.read_text()
    named = re.findall(r"(?<![\w./<-])((?:autoqvis|bench|tests|docs)/[\w./-]*\w)", text)
    missing = sorted({p for p in named if not (ROOT / p).exists()})
    assert not missing, f"{relative(path)} names paths that are not in the repository: {missing}"


def test_readme_is_a_front_door():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 220, (
        "README.md is the front door: keep it to 220 lines, move the rest to docs/"
    )
    first_block = re.search(r"```bash\n(.*?)```", text, flags=re.S)
    assert first_block and first_block.group(1).split()[:2] == ["make", "demo"], "the two commands come first"
    assert "make test" in first_block.group(1)


def test_readme_headline_results_name_their_command_and_hardware():
    """The headline results stand in one marked section (so that a new measurement replaces it whole), with the
    command that measured them and the machine."""
    text = (ROOT / "README.md").read_text()
    section = re.search(r"<!-- headline-results: begin.*?-->(.*?)<!-- headline-results: end -->", text, re.S)
    assert section, "README.md: the headline results section lost its begin/end markers"
    body = section.group(1)
    assert re.search(r"```bash\n\s*python bench/\S+\.py", body), "the headline results need their command"
    assert re.search(r"^Hardware: ", body, re.M), "the headline results need a 'Hardware: ' line"
    assert re.search(r"^\|.*\|$", body, re.M), "the headline results hold their table"
