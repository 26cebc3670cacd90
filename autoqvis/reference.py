"""The command and configuration reference, ``docs/reference.md``, generated from the code so that it cannot
drift: every command and subcommand of the parser :func:`autoqvis.cli.build_parser` builds (usage, every
argument with its help and default), every field of every configuration section in
:mod:`autoqvis.config.sections` (type, default and the comment that documents it there), the keys that moved,
and the shipped profiles (what each one sets).

    python -m autoqvis.reference --write     # rewrite docs/reference.md
    python -m autoqvis.reference             # print it
    python -m autoqvis.reference --check     # exit 1 if docs/reference.md is out of date

The output depends on the code alone (no date, no path of this machine, a fixed line width), so that
``tests/test_reference.py`` can regenerate it and compare.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import re
import sys
import textwrap
import tokenize
import types
import typing
from pathlib import Path

from autoqvis.cli import build_parser
from autoqvis.config import Config, read_yaml
from autoqvis.config import loader as config_loader
from autoqvis.config import sections as config_sections
from autoqvis.runs.atomic import atomic_write_text

COMMAND = "python -m autoqvis.reference --write"
DOCS_PATH = Path("docs") / "reference.md"  # relative to the repository root
REPO_ROOT = Path(__file__).resolve().parents[1]
WIDTH = 110  # usage lines are wrapped at this width, whatever the terminal


# ---------------------------------------------------------------------------------------------------- commands


def _fixed_width(parser: argparse.ArgumentParser) -> None:
    """Usage wrapped at WIDTH columns (argparse otherwise follows the terminal), on every sub-parser too."""
    parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=WIDTH)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _fixed_width(sub)


def _fill(text: str) -> str:
    """A paragraph wrapped at WIDTH, never inside a word or at a hyphen (a Markdown line break is a space)."""
    return textwrap.fill(" ".join(text.split()), WIDTH, break_on_hyphens=False, break_long_words=False)


def _cell(text: str) -> str:
    """Text for one Markdown table cell: one line, ``|`` escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _first_paragraph(text: str | None) -> str:
    text = inspect.cleandoc(text or "")
    return " ".join(text.split("\n\n")[0].split())


def _argument_name(action: argparse.Action) -> str:
    if not action.option_strings:
        return action.metavar or action.dest
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    metavar = action.metavar or action.dest.upper()
    if action.choices is not None and action.metavar is None:
        metavar = "{" + ",".join(str(c) for c in action.choices) + "}"
    return ", ".join(f"{s} {metavar}" for s in action.option_strings)


def _argument_default(action: argparse.Action) -> str:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return "off"
    if not action.option_strings:
        return "required" if action.nargs not in ("?", "*") else ""
    default = action.default
    if default is None or default == [] or default is argparse.SUPPRESS:
        return "required" if action.required else ""
    if isinstance(default, Path):
        default = default.as_posix()
    return f"`{default}`"


def _argument_help(action: argparse.Action, parser: argparse.ArgumentParser) -> str:
    text = action.help or ""
    if "%" in text:
        params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
        params["prog"] = parser.prog
        text = text % params
    notes = []
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        notes.append("choices: " + ", ".join(str(c) for c in action.choices))
    if isinstance(action, argparse._AppendAction):
        notes.append("repeatable")
    return _cell("; ".join([t for t in (text, *notes) if t]))


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _command(parser: argparse.ArgumentParser, help_text: str, level: int) -> list[str]:
    out = [f"{'#' * level} `{parser.prog}`", ""]
    lead = _first_paragraph(parser.description) or help_text[:1].upper() + help_text[1:]
    if lead:
        out += [_fill(lead), ""]
    prefix = "usage: "
    usage = [
        line.removeprefix(prefix).removeprefix(" " * len(prefix))
        for line in parser.format_usage().strip().splitlines()
    ]
    out += ["```", *usage, "```", ""]
    rows = [
        (action, _argument_name(action))
        for action in parser._actions
        if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
        and action.help != argparse.SUPPRESS  # hidden on purpose
    ]
    if rows:
        out += ["| argument | default | what it does |", "|---|---|---|"]
        for action, name in rows:
            out.append(
                f"| `{_cell(name)}` | {_argument_default(action)} | {_argument_help(action, parser)} |"
            )
        out.append("")
    sub = _subparsers(parser)
    if sub is not None:
        helps = {a.dest: a.help or "" for a in sub._choices_actions}
        for name, child in sub.choices.items():
            out += _command(child, helps.get(name, ""), level + 1)
    return out


def commands_reference() -> list[str]:
    parser = build_parser()
    _fixed_width(parser)
    sub = _subparsers(parser)
    assert sub is not None
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    out = [
        "## Commands",
        "",
        "`autoqvis COMMAND ...` (or `python -m autoqvis COMMAND ...`; `autoqvis --version` prints the version).",
        "Every command also takes `-h`/`--help`. Exit codes: 0 done, 2 bad input or a problem of the environment",
        "(one line on stderr), 1 an internal error (a bug), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    out += [f"| [`{name}`](#autoqvis-{name}) | {_cell(helps.get(name, ''))} |" for name in sub.choices]
    out.append("")
    for name, child in sub.choices.items():
        out += _command(child, helps.get(name, ""), 3)
    return out


# ------------------------------------------------------------------------------------------------ configuration


def _type_text(tp: typing.Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_text(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {_type_text(args[0])}"
        return "[" + ", ".join(_type_text(a) for a in args) + "]"
    return getattr(tp, "__name__", str(tp))


def _yaml_value(value: typing.Any) -> str:
    """A value as it is written in a YAML file or after ``--set key=``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    return str(value)


def _comment_text(lines: list[str]) -> str:
    return " ".join(line.strip().removeprefix("#").strip() for line in lines).strip()


def field_docs(cls: type, section: str | None = None) -> dict[str, str]:
    """The comment that documents each field of the dataclass ``cls``: the block of comment lines right above
    the field (a one-word block is a heading of the fields below it, not a field's doc) and the comment at the
    end of its line. A field without one that an earlier field's comment names (``max_borders`` in the
    comment of ``max_area``) is documented as "see" that field (``section.max_area`` with ``section``)."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    trailing: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and lines[tok.start[0] - 1][: tok.start[1]].strip():
            trailing[tok.start[0]] = tok.string.removeprefix("#").strip()
    body = ast.parse(source).body[0]
    assert isinstance(body, ast.ClassDef)
    docs: dict[str, str] = {}
    for node in body.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above: list[str] = []
        row = node.lineno - 2  # index of the line above
        while row >= 0 and lines[row].strip().startswith("#"):
            above.insert(0, lines[row])
            row -= 1
        block = _comment_text(above)
        if " " not in block:  # a heading such as "# losses"
            block = ""
        docs[node.target.id] = " ".join(t for t in (block, trailing.get(node.lineno, "")) if t)
    for name, text in docs.items():
        if text:
            continue
        for other, other_text in docs.items():
            if other == name:
                break
            if re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", other_text):
                docs[name] = f"see `{other}`" if section is None else f"see `{section}.{other}`"
                break
    return docs


def _commands_with(option: str) -> list[str]:
    sub = _subparsers(build_parser())
    assert sub is not None
    return [name for name, p in sub.choices.items() if any(option in a.option_strings for a in p._actions)]


def config_reference() -> list[str]:
    module_doc = inspect.cleandoc(config_sections.__doc__ or "")
    takers = ", ".join(f"`{name}`" for name in _commands_with("--config"))
    out = [
        "## Configuration",
        "",
        _fill(
            f"The commands {takers} take `--config FILE` (a YAML file holding only the differences from the "
            "defaults, or the name of a shipped profile; repeatable, later files win) and `--set "
            "section.key=value` (repeatable, applied last; the value is read as YAML: `--set "
            "synthesis.short_sides=[160]`). `autoqvis config` prints the resolved configuration; every output "
            "folder holds the one that made it (`config.yaml`). An unknown key is an error naming the nearest "
            "valid key, a value outside a field's choices one naming the choices. The defaults are the official "
            "AutoQ-VIS settings."
        ),
        "",
        "From `autoqvis/config/sections.py`:",
        "",
        *[line.rstrip() for line in module_doc.splitlines()],
        "",
        "| section | what it holds |",
        "|---|---|",
    ]
    hints = typing.get_type_hints(Config)
    fields = dataclasses.fields(Config)
    sections = [(f.name, hints[f.name]) for f in fields if dataclasses.is_dataclass(hints[f.name])]
    top = [f for f in fields if not dataclasses.is_dataclass(hints[f.name])]
    out += [f"| [`{name}`](#{name}) | {_cell(_first_paragraph(cls.__doc__))} |" for name, cls in sections]
    out.append("")
    if top:  # keys at the top level of the configuration, outside every section
        docs, defaults = field_docs(Config, ""), Config()
        out += ["### Top-level keys", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for f in top:
            value = _yaml_value(getattr(defaults, f.name))
            out.append(
                f"| `{f.name}` | {_cell(_type_text(hints[f.name]))} | `{_cell(value)}` | "
                f"{_cell(docs.get(f.name, ''))} |"
            )
        out.append("")
    for name, cls in sections:
        out += [
            f"### {name}",
            "",
            _fill(inspect.cleandoc(cls.__doc__ or "")),
            "",
        ]
        hints = typing.get_type_hints(cls)
        docs = field_docs(cls, name)
        defaults = cls()
        out += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for f in dataclasses.fields(cls):
            value = _yaml_value(getattr(defaults, f.name))
            out.append(
                f"| `{name}.{f.name}` | {_cell(_type_text(hints[f.name]))} | `{_cell(value)}` | "
                f"{_cell(docs.get(f.name, ''))} |"
            )
        out.append("")
    out += [
        "### Keys that moved",
        "",
        "A key that moved is refused under its old name, from `--set`, a YAML file or a saved `config.yaml`",
        "alike, with a message naming the new one.",
        "",
        "| old key | new key |",
        "|---|---|",
        *[f"| `{old}` | `{new}` |" for old, new in config_loader.MOVED.items()],
        "",
    ]
    return out


# ------------------------------------------------------------------------------------------------------ profiles


def _profile_comments(text: str) -> tuple[str, dict[str, str]]:
    """The header comment of a profile (up to its first blank comment line) and the comment of each
    ``section.key``: the comment lines right above it and the one at the end of its line, with the lines that
    continue it in the same column."""
    header: list[str] = []
    comments: dict[str, list[str]] = {}
    section, last_key, last_column = "", "", -1
    above: list[str] = []
    lines = text.splitlines()
    while lines and lines[0].startswith("#") and lines[0].strip("# "):
        header.append(lines.pop(0))
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            if last_key and line.index("#") == last_column:
                comments[last_key].append(stripped)
            elif stripped.strip("# "):
                above.append(stripped)
            continue
        match = re.match(r"^(\s*)([\w-]+):(.*)$", line)
        last_key, last_column = "", -1
        if not match:
            above = []
            continue
        indent, key, rest = match.groups()
        if not indent:
            section, above = key, []
            continue
        dotted = f"{section}.{key}"
        comments[dotted] = above
        above = []
        _value, sep, comment = rest.partition(" #")
        if sep:
            comments[dotted].append("#" + comment)
            last_key, last_column = dotted, line.index(" #") + 1
    return _comment_text(header), {k: _comment_text(v) for k, v in comments.items() if v}


def _flatten(data: dict, prefix: str = "") -> dict[str, typing.Any]:
    out: dict[str, typing.Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out |= _flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def profiles_reference() -> list[str]:
    out = [
        "## Profiles",
        "",
        "The shipped profiles in `autoqvis/configs/`, usable by name (`--config small_data`); each holds only",
        "what it changes from the defaults above. The comments are the files' own.",
        "",
    ]
    for path in sorted(config_loader.PROFILES_DIR.glob("*.yaml")):
        text = path.read_text()
        header, comments = _profile_comments(text)
        values = _flatten(read_yaml(text) or {})
        out += [f"### `{path.stem}`", "", _fill(header), ""]
        out += ["| key | value | note |", "|---|---|---|"]
        for key, value in values.items():
            out.append(f"| `{key}` | `{_cell(_yaml_value(value))}` | {_cell(comments.get(key, ''))} |")
        out.append("")
    return out


# ------------------------------------------------------------------------------------------------------ the file


def reference() -> str:
    """The whole of ``docs/reference.md``."""
    out = [
        "# Reference: commands, configuration, profiles",
        "",
        f"<!-- Generated by `{COMMAND}` from autoqvis/cli.py, autoqvis/commands/,",
        "autoqvis/config/sections.py and autoqvis/configs/. Do not edit by hand: tests/test_reference.py",
        "regenerates it and fails when it differs. -->",
        "",
        "Generated from the code: the command-line parsers, the configuration sections and the shipped profiles.",
        "The user guide is [guide.md](guide.md); what reruns do and what errors look like is",
        "[reruns-and-errors.md](reruns-and-errors.md).",
        "",
        "- [Commands](#commands)",
        "- [Configuration](#configuration)",
        "- [Profiles](#profiles)",
        "",
        *commands_reference(),
        *config_reference(),
        *profiles_reference(),
    ]
    text = "\n".join(line.rstrip() for line in out).rstrip() + "\n"
    return re.sub(r"\n{3,}", "\n\n", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m autoqvis.reference", description="Generate docs/reference.md from the code."
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--write", action="store_true", help=f"write {DOCS_PATH.as_posix()} in the repository")
    what.add_argument("--check", action="store_true", help=f"exit 1 if {DOCS_PATH.as_posix()} is out of date")
    args = parser.parse_args(argv)
    text = reference()
    path = REPO_ROOT / DOCS_PATH
    if not (args.write or args.check):
        sys.stdout.write(text)
        return 0
    if not path.parent.is_dir():
        print(
            f"no docs/ folder beside the package ({path.parent}): --write and --check work in a source checkout",
            file=sys.stderr,
        )
        return 2
    if args.check:
        current = path.read_text() if path.is_file() else ""
        if current != text:
            print(f"{DOCS_PATH.as_posix()} is out of date; run: {COMMAND}", file=sys.stderr)
            return 1
        return 0
    atomic_write_text(path, text)
    print(f"wrote {DOCS_PATH.as_posix()} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
