"""The import graph's layers: each package of ``blackbox/`` imports only from the layers below it.

Bottom up: ``targets`` (the zoo) -> ``blackbox.core`` (the pure data path) -> ``blackbox.attacks`` ->
``blackbox.search`` -> ``blackbox.experiment`` -> ``blackbox.evaluate`` -> ``blackbox.training`` ->
``blackbox.settings`` (Hydra configs read at the edge) -> the ``python -m`` entry points and the Python
API (the top-level modules of ``blackbox/``). Every import counts, also those inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = [
    "targets",
    "blackbox.core",
    "blackbox.attacks",
    "blackbox.search",
    "blackbox.experiment",
    "blackbox.evaluate",
    "blackbox.training",
    "blackbox.settings",
]


def layer_of(module: str) -> int:
    """The layer index of a dotted module name; the top-level ``blackbox`` modules are the top layer."""
    for index, prefix in reversed(list(enumerate(LAYERS))):
        if module == prefix or module.startswith(prefix + "."):
            return index
    return len(LAYERS)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import of a project module in ``path``, relative imports resolved."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.append((node.lineno, ".".join([*base, node.module or ""]).rstrip(".")))
            else:
                found.append((node.lineno, node.module or ""))
                found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] in {"blackbox", "targets"}]


MODULES = sorted([*REPO.joinpath("blackbox").rglob("*.py"), *REPO.joinpath("targets").rglob("*.py")])


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(REPO)))
def test_a_module_imports_only_from_its_own_layer_or_below(path: Path) -> None:
    own = layer_of(".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"))
    upward = [
        f"line {line}: {name} ({LAYERS[layer_of(name)] if layer_of(name) < len(LAYERS) else 'entry points'})"
        for line, name in imports(path)
        if layer_of(name) > own and name not in {"blackbox", "targets"}
    ]
    assert not upward, f"{path.relative_to(REPO)} imports from a layer above its own:\n" + "\n".join(upward)
