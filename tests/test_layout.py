"""The package's layers import one way only, and no module imports itself back through others.

Layers, bottom to top (STYLE.md): training, search, experiment, reporting, paper, cli. A module may
import its own layer and those below; the top-level `lrsearch/__init__.py` (lazy re-exports) and
`__main__.py` stand above all. Every import counts, also one inside a function: a lazy import
still makes the lower layer depend on the higher one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lrsearch"
LAYERS = ["training", "search", "experiment", "reporting", "paper", "cli"]


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under the package folder `root`."""
    names = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (the most specific module each import names)."""
    modules = module_names(root)
    top = root.name
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            for target in targets:
                if target == top or target.startswith(top + "."):
                    while target not in modules:  # `import pkg.mod.attr` -> pkg.mod
                        target = target.rpartition(".")[0]
                    if target != name:
                        graph[name].add(target)
    return graph


def layer_of(module: str) -> int | None:
    """Index in LAYERS, or None for the top-level package and __main__ (above every layer)."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in sorted(graph.items()):
        here = layer_of(module)
        if here is None:
            continue
        for target in sorted(targets):
            there = layer_of(target)
            if there is None or there > here:
                where = "the top-level package" if there is None else f"layer {LAYERS[there]}"
                found.append(f"{module} (layer {LAYERS[here]}) imports {target} ({where})")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return groups


def test_every_module_lives_in_a_layer():
    stray = [m for m in module_names(PACKAGE) if layer_of(m) is None and m not in ("lrsearch", "lrsearch.__main__")]
    assert stray == [], f"modules outside the layers {LAYERS}: {stray}"


def test_no_layer_imports_a_higher_one():
    assert upward_imports(import_graph(PACKAGE)) == []


def test_no_import_circles():
    assert cycles(import_graph(PACKAGE)) == []


@pytest.mark.parametrize("layer", LAYERS)
def test_each_layer_says_what_it_holds(layer):
    doc = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text()))
    assert doc and "import" in doc, f"lrsearch/{layer}/__init__.py: a docstring saying what it holds and may import"


def test_the_checks_catch_an_upward_import_and_a_circle(tmp_path):
    """The checks above on a package built to break both rules."""
    pkg = tmp_path / "lrsearch"
    for layer in ("training", "search"):
        (pkg / layer).mkdir(parents=True)
        (pkg / layer / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "training" / "a.py").write_text("def f():\n    from lrsearch.search.b import g\n")
    (pkg / "search" / "b.py").write_text("from lrsearch.search import c\n")
    (pkg / "search" / "c.py").write_text("from .b import g\nimport lrsearch.training.a\n")
    graph = import_graph(pkg)
    assert upward_imports(graph) == ["lrsearch.training.a (layer training) imports lrsearch.search.b (layer search)"]
    assert cycles(graph) == [["lrsearch.search.b", "lrsearch.search.c", "lrsearch.training.a"]]


def test_public_names_resolve():
    """Each public name is the very object its module defines, read from the module the docs name for it (so a
    typo in the lazy map, or a stand-in, fails); `lrsearch.search` is the search package itself."""
    import importlib
    import importlib.metadata

    import lrsearch

    where = {"range_test": "lrsearch.search.lr_finder", "suggest_range": "lrsearch.search.lr_finder",
             "suggest_lr": "lrsearch.search.lr_finder", "get_strategy": "lrsearch.search.strategies",
             "strategy_names": "lrsearch.search.strategies", "train": "lrsearch.training.trainer",
             "TrialResult": "lrsearch.training.trainer", "get_task": "lrsearch.training.tasks",
             "Task": "lrsearch.training.tasks", "TASKS": "lrsearch.training.tasks",
             "Experiment": "lrsearch.experiment.config", "run_experiment": "lrsearch.experiment.runner",
             "Store": "lrsearch.experiment.store", "build_report": "lrsearch.reporting.report"}
    for name in lrsearch.__all__:
        value = getattr(lrsearch, name)
        if name == "__version__":
            assert value == importlib.metadata.version("lrsearch")
        elif name == "search":
            assert value is importlib.import_module("lrsearch.search")
        else:
            module = importlib.import_module(where.get(name, lrsearch._EXPORTS[name]))
            assert value is getattr(module, name), name
            assert getattr(value, "__module__", module.__name__).startswith("lrsearch."), name
