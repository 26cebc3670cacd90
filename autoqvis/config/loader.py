"""Making a configuration: the defaults, YAML deltas (files or shipped profiles) and ``--set a.b=value``
overrides; unknown keys name the nearest valid one, values are checked against the field's type; the resolved
configuration is written into every output directory (``config.yaml``)."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import re
import shlex
import subprocess
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from autoqvis.config.checks import ConfigError
from autoqvis.config.sections import Config
from autoqvis.errors import StaleOutputError

__all__ = [
    "INFERENCE_RUNTIME_ONLY",
    "all_keys",
    "apply_delta",
    "config_from_dict",
    "config_to_dict",
    "inference_settings",
    "load_config",
    "parse_override",
    "profiles",
    "read_yaml",
    "resolve_config_file",
    "save_config",
    "saved_config",
    "set_command_line",
]


def load_config(
    paths: Sequence[str | Path] = (), overrides: Sequence[str] = (), base: Config | None = None
) -> Config:
    """Defaults (or ``base``) + each YAML delta in order + each ``a.b=value`` override in order.

    The deltas are merged first (a later one wins for the same key) and applied at once, so that the ranges
    and the rules between fields (``inference.overlap < inference.window``) see the final values whatever
    the order of the files and overrides; an error names the file or override that set the key at fault."""
    cfg = base if base is not None else Config()
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for path in paths:
        path = resolve_config_file(path)
        try:
            delta = read_yaml(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(err)}") from err
        except ConfigError as err:  # a duplicate key
            raise ConfigError(f"{path}: {err}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"cannot read config file {path}: {err}") from err
        if not isinstance(delta, Mapping):
            raise ConfigError(f"{path} must hold a mapping of sections, got {type(delta).__name__}")
        _merge(merged, delta, sources, str(path))
    for text in overrides:
        _merge(merged, parse_override(text), sources, f"--set {text}")
    return apply_delta(cfg, merged, source=sources)


def _merge(merged: dict, delta: Mapping, sources: dict[str, str], source: str, prefix: str = "") -> None:
    """Deep-merge ``delta`` into ``merged``, recording which source set each dotted key last."""
    for key, value in delta.items():
        dotted = f"{prefix}{key}"
        sources[dotted] = source
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            _merge(merged[key], value, sources, source, prefix=f"{dotted}.")
        else:
            merged[key] = dict(value) if isinstance(value, Mapping) else value
            if isinstance(value, Mapping):
                _record(value, sources, source, prefix=f"{dotted}.")


def _record(delta: Mapping, sources: dict[str, str], source: str, prefix: str) -> None:
    for key, value in delta.items():
        sources[f"{prefix}{key}"] = source
        if isinstance(value, Mapping):
            _record(value, sources, source, prefix=f"{prefix}{key}.")


PROFILES_DIR = Path(__file__).resolve().parents[1] / "configs"


def profiles() -> list[str]:
    """Names of the profiles shipped with autoqvis."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def resolve_config_file(path: str | Path) -> Path:
    """An existing YAML file, or the shipped profile of that name (``small_data``, ``configs/small_data.yaml``)."""
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder; pass a YAML file")
    name = path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml"
    shipped = PROFILES_DIR / name
    if shipped.is_file():
        return shipped
    raise ConfigError(
        f"config file {path} not found; pass an existing YAML file or a shipped profile "
        f"({', '.join(profiles())})"
    )


def parse_override(text: str) -> dict[str, Any]:
    """``"a.b=0.5"`` -> ``{"a": {"b": 0.5}}``; the value is parsed as YAML (numbers, lists, null)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override must look like section.key=value, got {text!r}")
    try:
        value = read_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot parse the value of override {text!r}: {_yaml_problem(err)}") from err
    nested: dict[str, Any] = {}
    node = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return nested


def apply_delta(obj: Any, delta: Mapping[str, Any], source: str | Mapping[str, str], prefix: str = "") -> Any:
    """Return a copy of dataclass ``obj`` with ``delta`` applied; unknown keys, bad types and values out of
    range raise. ``source`` names where the delta came from, one name or one per dotted key."""

    def where(dotted: str) -> str:
        if isinstance(source, str):
            return source
        while dotted and dotted not in source:
            dotted = dotted.rpartition(".")[0]
        return source.get(dotted, "config")

    fields = {f.name: f for f in dataclasses.fields(obj)}
    hints = typing.get_type_hints(type(obj))
    changes = {}
    for key, value in delta.items():
        dotted = f"{prefix}{key}"
        if dotted in MOVED:
            raise ConfigError(_moved_key_message(dotted, value, where(dotted)), key=dotted)
        if key not in fields:
            raise ConfigError(_unknown_key_message(dotted, where(dotted)), key=dotted)
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"{where(dotted)}: '{dotted}' is a section and needs a mapping, got {value!r}", key=dotted
                )
            changes[key] = apply_delta(current, value, source, prefix=f"{dotted}.")
        else:
            changes[key] = _coerce(value, hints[key], dotted, where(dotted))
    try:
        return dataclasses.replace(obj, **changes)
    except ConfigError as err:  # a range or a rule between fields (from the section's __post_init__)
        raise ConfigError(f"{where(err.key or prefix.rstrip('.'))}: {err}", key=err.key) from None


def config_to_dict(obj: Any) -> dict[str, Any]:
    """Plain nested dict (tuples become lists) for YAML/JSON."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        return value

    return {
        f.name: config_to_dict(v) if dataclasses.is_dataclass(v) else plain(v)
        for f in dataclasses.fields(obj)
        for v in [getattr(obj, f.name)]
    }


# inference settings that change where and how fast predictions are computed, not what they are
INFERENCE_RUNTIME_ONLY = ("token_cache_mb",)


def inference_settings(inference: Any) -> dict[str, Any]:
    """The ``inference`` section as a fingerprint holds it: every value that changes the predictions (not the
    token cache's size; the device is the top-level ``device``, not in the section)."""
    return {k: v for k, v in config_to_dict(inference).items() if k not in INFERENCE_RUNTIME_ONLY}


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """Inverse of :func:`config_to_dict` (validated like a YAML delta)."""
    return apply_delta(Config(), data, source="saved config")


def save_config(
    cfg: Config, directory: str | Path, name: str = "config.yaml", command: str | None = None
) -> Path:
    """Write the resolved configuration into ``directory``, after a header with the git commit (when known)
    and the command line that ran (``command``, default the one :func:`set_command_line` recorded)."""
    from autoqvis.runs.atomic import atomic_write_text

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    command = command if command is not None else _COMMAND_LINE
    header = f"# resolved autoqvis configuration\n# git commit: {git_commit() or 'unknown'}\n"
    if command:
        header += "# command: " + command.replace("\n", " ") + "\n"
    text = header + yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
    return atomic_write_text(directory / name, text)


@contextlib.contextmanager
def saved_config(
    cfg: Config, directory: str | Path, name: str = "config.yaml", enabled: bool = True
) -> Iterator[Path]:
    """Save the config for a run whose resumable units are checked as it goes (self-training, the demo): when
    the run stops because earlier outputs were made with other settings (:class:`StaleOutputError`), the
    previous ``config.yaml`` is put back, since it still describes the files beside it."""
    from autoqvis.runs.atomic import atomic_write_bytes

    path = Path(directory) / name
    previous = path.read_bytes() if enabled and path.is_file() else None
    if enabled:
        save_config(cfg, directory, name)
    try:
        yield path
    except StaleOutputError:
        if enabled and previous is not None:
            atomic_write_bytes(path, previous)
        raise


_COMMAND_LINE: str | None = None


def set_command_line(argv: Sequence[str] | None) -> None:
    """Record the command line this process runs (the CLI does), for the header of every saved config."""
    global _COMMAND_LINE
    _COMMAND_LINE = None if argv is None else shlex.join(["autoqvis", *argv])


def git_commit() -> str | None:
    """The commit of the autoqvis source tree, if it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def all_keys(obj: Any = None, prefix: str = "") -> list[str]:
    """Every valid dotted key, e.g. ``selection.quality_min``."""
    obj = Config() if obj is None else obj
    keys = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            keys += all_keys(value, f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


# ---------------------------------------------------------------------------------------------------
# YAML as the user typed it


class _Loader(yaml.SafeLoader):
    """YAML with the booleans of YAML 1.2 (``true`` / ``false`` only: ``off``, ``no``, ``on``, ``yes`` stay the
    strings they look like, so ``--set training.amp=off`` means ``'off'``) and no duplicate keys."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            first = seen[key].start_mark.line + 1
            raise ConfigError(
                f"duplicate key {key!r} at line {key_node.start_mark.line + 1} (first at line {first}): "
                "a key may appear once per section; keep one of them"
            )
        seen[key] = key_node
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(text: str) -> Any:
    """Parse YAML as :func:`yaml.safe_load` does, but with YAML 1.2 booleans and duplicate keys refused
    (:class:`ConfigError` naming the key and both lines)."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: builds plain data only


# ---------------------------------------------------------------------------------------------------
# helpers


def _yaml_problem(err: yaml.YAMLError) -> str:
    """One line: what the YAML parser expected and where."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


# keys that moved, old -> new: a file, an override or a saved config that uses an old key is refused with the
# new name (a value is never applied under a key the user did not write)
MOVED = {
    # the selection section held three concerns: which labels are kept (still `selection`), how each round
    # trains (`rounds`), and the loop with the choice of the result (`selftrain`)
    "selection.round_iters": "rounds.iters",
    "selection.round_batch_size": "rounds.batch_size",
    "selection.round_lr": "rounds.lr",
    "selection.freeze_quality_head": "training.freeze_quality_head",
    "selection.droploss": "training.droploss",
    "selection.mix_prob": "rounds.mix_prob",
    "selection.mix_frames": "rounds.mix_frames",
    "selection.num_rounds": "selftrain.num_rounds",
    "selection.reset_each_round": "selftrain.reset_each_round",
    "selection.select_metric": "selftrain.select_metric",
    "selection.label_free_pick": "selftrain.label_free_pick",
    # one home per training setting: a round changes the training section (rounds.iters, batch_size, lr);
    # DropLoss and the frozen head are training's, on in the rounds unless set
    "rounds.freeze_quality_head": "training.freeze_quality_head",
    "rounds.droploss": "training.droploss",
    # the device is chosen once for every stage, not by the inference section
    "inference.device": "device",
    # one background-region rule for discovery's cuts and the selection's frames
    "selection.max_area": "discovery.max_area",
    "selection.max_borders": "discovery.max_borders",
}


def _moved_key_message(dotted: str, value: Any, source: str) -> str:
    new = MOVED[dotted]
    if source.startswith("--set "):
        fix = f"pass --set {new}={_plain(value)}"
    elif "." not in new:  # a top-level key
        fix = f"move it to the top level of {source} as '{new}:'"
    else:
        fix = f"rename it to '{new.rpartition('.')[2]}' under '{new.rpartition('.')[0]}:' in {source}"
    return f"{source}: '{dotted}' moved to '{new}'; {fix}"


def _plain(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _unknown_key_message(dotted: str, source: str) -> str:
    candidates = all_keys() + [f.name for f in dataclasses.fields(Config)]
    nearest = difflib.get_close_matches(dotted, candidates, n=1, cutoff=0.0)
    # prefer a key in the same section when the section exists
    section = dotted.rpartition(".")[0]
    same_section = [k for k in candidates if k.rpartition(".")[0] == section]
    if same_section:
        nearest = difflib.get_close_matches(dotted, same_section, n=1, cutoff=0.0) or nearest
    hint = f"; did you mean '{nearest[0]}'?" if nearest else ""
    return f"{source}: unknown config key '{dotted}'{hint}"


def _coerce(value: Any, hint: Any, dotted: str, source: str) -> Any:
    """Check ``value`` against the type hint; convert YAML lists to tuples and ints to floats."""

    def fail(expected: str) -> ConfigError:
        return ConfigError(f"{source}: '{dotted}' must be {expected}, got {value!r}")

    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        given = [a for a in args if a is not type(None)]
        if len(given) == 1:  # an optional value: what the value must be (null leaves it unset)
            try:
                return _coerce(value, given[0], dotted, source)
            except ConfigError as err:
                raise ConfigError(f"{err}, or null") from None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, dotted, source)
            except ConfigError as err:
                errors.append(err)
        raise fail(" or ".join(_type_name(a) for a in args))
    if origin is Literal:
        if value not in args:
            raise fail("one of " + ", ".join(repr(a) for a in args))
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise fail(f"a list ({_type_name(hint)})")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], dotted, source) for v in value)
        if len(value) != len(args):
            raise fail(f"a list of {len(args)} values")
        return tuple(_coerce(v, a, dotted, source) for v, a in zip(value, args))
    if hint is bool:
        if isinstance(value, str) and value.lower() in _BOOL_WORDS:  # YAML 1.1's yes/no/on/off, as typed
            return _BOOL_WORDS[value.lower()]
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an integer")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise fail("a number") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail("a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise fail("a string")
        return value
    raise ConfigError(f"{source}: '{dotted}' has an unsupported type {hint}")  # internal: a new field type


_BOOL_WORDS = {"yes": True, "on": True, "y": True, "no": False, "off": False, "n": False}


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))
