"""The package's layers only point down: a module may import its own layer and the layers below it.

Every ``import``/``from ... import`` of every module is read with :mod:`ast`, the ones inside functions
included (a lazy import is still a dependency). The order is the README's "Layout" section:

    base        errors, paths, progress, device, rle
    runs        run bookkeeping: atomic writes, input access, fingerprints, locks, output folders, run layout
    data        io, structures, config
    losses
    model       ResNet, ViT, pixel decoder, decoder, quality head, build/load
    discover    MaskCut on ViT features
    synth       ImageCut2Video, clip augmentation
    train       training loop, data mixing, checkpoints, DDP
    predict     whole-video and streaming prediction
    evaluate    YouTube-VIS, DAVIS, quality analysis, scoring a model on labelled videos
    selftrain   selection, fusion, the self-training loop
    report      HTML reports of runs
    demo        the demo job (its generated world is a data source: io/world.py)
    entry       api, benchmark, cli, commands (the user-facing surface; benchmark: the bench/ results format)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "autoqvis"

LAYERS: list[tuple[str, ...]] = [
    ("errors", "paths", "progress", "device", "rle"),
    ("runs",),
    ("io", "structures", "config"),
    ("losses",),
    ("model",),
    ("discover",),
    ("synth",),
    ("train",),
    ("predict",),
    ("evaluate",),
    ("selftrain",),
    ("report",),
    ("demo",),
    ("api", "benchmark", "cli", "commands", "reference", "__init__", "__main__"),
]
LEVEL = {part: i for i, layer in enumerate(LAYERS) for part in layer}


def top_part(module: str) -> str | None:
    """``autoqvis.io.ytvis`` -> ``io``; ``autoqvis`` -> ``__init__``; other packages -> None."""
    parts = module.split(".")
    if parts[0] != "autoqvis":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)


def imported_modules(source: str, module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source`` (the text of ``module``), wherever it
    stands: module level, inside functions, under ``if TYPE_CHECKING``."""
    tree = ast.parse(source)
    package = module.removesuffix(".__init__") if module.endswith(".__init__") else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == "autoqvis":  # from autoqvis import x: x is a submodule or a name of __init__
                out += [(node.lineno, f"autoqvis.{alias.name}") for alias in node.names]
            else:
                out.append((node.lineno, module))
    return out


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_package_has_a_layer():
    parts = {top_part(module_name(p)) for p in modules()}
    missing = sorted(p for p in parts if p not in LEVEL)
    assert not missing, f"add these to LAYERS (and to the README's layout): {missing}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_imports_only_point_down(path: Path):
    own = top_part(module_name(path))
    upward = []
    for line, module in imported_modules(path.read_text(), module_name(path)):
        target = top_part(module)
        if target is None or target not in LEVEL:
            continue
        if LEVEL[target] > LEVEL[own]:
            upward.append(f"line {line}: {module} ({target} is above {own})")
    assert not upward, f"{path.name} imports upward:\n" + "\n".join(upward)


def test_the_checker_sees_imports_inside_functions_and_relative_ones():
    text = "import os\n\ndef f():\n    from autoqvis.selftrain import loop\n    from ..demo import world\n"
    found = imported_modules(text, "autoqvis.model.probe")
    assert found == [(1, "os"), (4, "autoqvis.selftrain"), (5, "autoqvis.demo")]
    assert imported_modules("from . import rle\n", "autoqvis.io.__init__") == [(1, "autoqvis.io")]


def _module_of(name: str, known: set[str]) -> str | None:
    """The module file an import names: ``autoqvis.io.ytvis`` itself, or the package ``autoqvis.io`` (its
    ``__init__``) for ``from autoqvis.io import x`` when x is not a module; None outside autoqvis."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """``{module: modules it imports}`` over every autoqvis module, imports inside functions included;
    a package is its ``__init__`` (``autoqvis.io``)."""
    names = {module_name(p).removesuffix(".__init__"): p for p in modules()}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        targets = {
            _module_of(m, set(names)) for _, m in imported_modules(path.read_text(), module_name(path))
        }
        graph[name] = {t for t in targets if t is not None and t != name and t != "autoqvis"}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_through_others():
    """No import cycle between modules (build -> vit -> build once was one, through an import inside a
    function)."""
    assert not cycles(import_graph()), "import cycles:\n" + "\n".join(
        " <-> ".join(c) for c in cycles(import_graph())
    )


def test_no_package_imports_itself_through_others():
    """No cycle between the top-level packages either (structures -> io.rle while io.ytvis -> structures once
    was one): within a layer the imports point one way too."""
    parts: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        own = top_part(module)
        parts.setdefault(own, set()).update(top_part(t) for t in targets if top_part(t) != own)
    assert not cycles(parts), "package cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles(parts))


def test_the_cycle_check_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
