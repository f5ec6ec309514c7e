"""The import graph of mpitrain: no cycles, and every import points down the layers below.

A module's layer is that of its first name below ``mpitrain`` (``mpitrain.data.csv`` -> ``data``).
Imports inside ``if TYPE_CHECKING:`` are annotations only and do not count; imports inside
functions do (a cycle hidden in a function is still a cycle), except the run-time calls upward
listed in ``LAZY_UPWARD`` with their reason. Modules not listed are tools on top: they may
import anything, and nothing listed may import them.
"""
import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mpitrain")
LAYERS = [
    {"_version", "_startup", "errors", "params", "timeline", "_mpi", "costmodel"},
    {"comm", "agree", "optim"},
    {"data", "models", "outputs"},
    {"collectives"},
    {"algorithms", "checkpoint", "rundir", "guard", "phases", "inference", "metrics", "selection", "weighting"},
    {"peers"},
    {"supervisor"},
    {"run"},
]
# Upward imports made inside a function, at run time, each allowed for a stated reason (none today:
# the communicator sits below everything that communicates, and MPI's start calls back registered
# hooks instead of importing the signal guard).
LAZY_UPWARD: dict[tuple[str, str], str] = {}
LAYER = {name: depth for depth, names in enumerate(LAYERS) for name in names}
TOP = len(LAYERS)


def modules() -> dict[str, str]:
    """Dotted module name -> file path, for every module of the package."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for file in files:
            if file.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, file), os.path.dirname(PACKAGE))[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                found[".".join(rel)] = os.path.join(folder, file)
    return found


def imports(name: str, path: str, known: set[str], top_only: bool = False) -> set[str]:
    """The package modules ``name`` imports, outside ``if TYPE_CHECKING:`` blocks (``top_only``:
    only the statements at module level, not those inside functions)."""
    tree = ast.parse(open(path).read())
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for child in node.body for n in ast.walk(child)}
    out = set()
    for node in (tree.body if top_only else ast.walk(tree)):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else (node.module or "")
            for alias in node.names:
                full = f"{target}.{alias.name}"
                out.add(full if full in known else target)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return {m for m in out if m in known and m != name}


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYER.get(parts[1], TOP) if len(parts) > 1 else TOP


GRAPH = {name: imports(name, path, set(modules())) for name, path in modules().items()}


def test_every_allowed_lazy_import_is_made_inside_a_function_and_still_exists():
    for (a, b), reason in LAZY_UPWARD.items():
        assert b in GRAPH[a], f"{a} no longer imports {b}: drop it from LAZY_UPWARD ({reason})"
        at_top = imports(a, modules()[a], set(modules()), top_only=True)
        assert b not in at_top, f"{a} imports {b} at module level, not lazily ({reason})"


def test_imports_point_down_the_layers():
    upward = sorted(f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})" for a, targets in GRAPH.items()
                    for b in targets if layer(b) > layer(a) and not b.startswith(a + ".")
                    and a.split(".")[:2] != b.split(".")[:2] and (a, b) not in LAZY_UPWARD)
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    # A package's __init__ importing its submodules counts too: a submodule that imports its package
    # back (``from . import Dataset``) closes a cycle.
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH[node] - {b for a, b in LAZY_UPWARD if a == node}):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]) if nxt in path else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(GRAPH):
        if start not in state:
            visit(start, [start])
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_is_over_400_lines(name):
    with open(modules()[name]) as f:
        assert sum(1 for _ in f) <= 400, f"{name} has grown past 400 lines: split it by responsibility"
