"""The package's layers only point down: a module may import its own layer and the layers below it.

Every ``import``/``from ... import`` of every module is read with :mod:`ast`, the ones inside functions
included (a lazy import is still a dependency). The order is the README's "Layout" section:

    base        errors, paths, progress, device
    data        io, structures, config
    losses
    model       ResNet, ViT, pixel decoder, decoder, quality head, build/load
    discover    MaskCut on ViT features
    synth       ImageCut2Video, clip augmentation
    engine      training loop, data mixing, checkpoints, DDP
    inference   whole-video and streaming prediction
    eval        YouTube-VIS, DAVIS, quality analysis, scoring a model on labelled videos
    selftrain   selection, fusion, the self-training loop
    report      HTML reports of runs
    demo        the generated world and the demo job
    entry       api, cli, commands (the user-facing surface)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "autoqvis"

LAYERS: list[tuple[str, ...]] = [
    ("errors", "paths", "progress", "device"),
    ("io", "structures", "config"),
    ("losses",),
    ("model",),
    ("discover",),
    ("synth",),
    ("engine",),
    ("inference",),
    ("eval",),
    ("selftrain",),
    ("report",),
    ("demo",),
    ("api", "cli", "commands", "__init__", "__main__"),
]
LEVEL = {part: i for i, layer in enumerate(LAYERS) for part in layer}


def top_part(module: str) -> str | None:
    """``autoqvis.io.rle`` -> ``io``; ``autoqvis`` -> ``__init__``; other packages -> None."""
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
