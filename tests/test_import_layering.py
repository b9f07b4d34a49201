"""Imports run one way: CLI -> jobs -> LightningModules -> nets/losses; datamodules import
none of them; memory_bank reaches the model code only through ``lightning_modules.nets``.

Read from the source with ``ast`` (imports inside functions count too), so a lazy import
cannot hide an arrow that runs the wrong way.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("lightning_modules", "datamodules", "memory_bank")
LIGHTNING_MODULE_FILES = ("lightning_modules.lipsync_gan", "lightning_modules.mouth_autoencoder",
                          "lightning_modules.sync_expert")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if "configs" in path.relative_to(REPO).parts:
                continue
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The module of ours that an imported dotted name lives in (None: not ours)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


GRAPH = {name: {o for i in _imports(path) if (o := _owner(i)) and o != name
                and not name.startswith(o + ".")}
         for name, path in MODULES.items()}


def _arrows(src_prefix: str) -> list[tuple[str, str]]:
    return sorted((a, b) for a, bs in GRAPH.items() if a.startswith(src_prefix) for b in bs)


def test_the_walker_sees_known_arrows():
    assert "lightning_modules.training.nonfinite_guard" in GRAPH["lightning_modules.lipsync_gan"]
    assert "lightning_modules.generation.clip_generation" in GRAPH["lightning_modules.media.val_media"]
    assert "memory_bank.artifacts.registry" in GRAPH["memory_bank.artifacts.references"]


def test_datamodules_import_neither_models_nor_the_bank():
    bad = [(a, b) for a, b in _arrows("datamodules") if not b.startswith("datamodules")]
    assert bad == []


def test_memory_bank_reaches_model_code_only_through_nets():
    bad = [(a, b) for a, b in _arrows("memory_bank")
           if b.startswith("lightning_modules")
           and not (b == "lightning_modules.nets" or b.startswith("lightning_modules.nets."))]
    assert bad == []


@pytest.mark.parametrize("package", ["lightning_modules.nets", "lightning_modules.losses"])
def test_nets_and_losses_import_no_training_code(package):
    allowed = ("lightning_modules.nets", "lightning_modules.losses", "datamodules",
               "lightning_modules.checkpoints.sync_expert_file")
    bad = [(a, b) for a, b in _arrows(package) if not b.startswith(allowed)]
    assert bad == []


def test_only_the_cli_imports_the_cli_and_the_lightning_modules():
    bad = [(a, b) for a, bs in GRAPH.items() for b in bs
           if (b.startswith("lightning_modules.cli") or b in LIGHTNING_MODULE_FILES)
           and not a.startswith("lightning_modules.cli") and a not in LIGHTNING_MODULE_FILES]
    assert bad == []


def test_no_import_cycles():
    """Tarjan's strongly connected components over the module graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert cycles == []
