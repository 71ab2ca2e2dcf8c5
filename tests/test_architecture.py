"""The layers of docs/architecture.md hold: no import from a higher layer, no import cycle.

Every ``import`` in ``src/envelope_encryption`` counts, wherever it stands (module level,
inside a function, under ``TYPE_CHECKING``): a lazy import from a layer above is still a
dependency on it. The rank of each folder is declared once here and in the architecture page.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "envelope_encryption"
SOURCE = Path(__file__).resolve().parents[1] / "src" / PACKAGE

# Lower ranks may be imported by higher ones, never the other way round. Modules directly in
# the package (errors, secret, identifiers, config, lakehouse) form the shared bottom layer.
LAYERS = {
    "": 0,         # shared: errors, secret, identifiers, config, lakehouse
    "cell": 1,
    "kek": 2,
    "keyring": 3,
    "legacy": 3,   # reading the original notebooks' keys: part of the keyring layer
    "spark": 4,
    "jobs": 5,
}


def module_name(path: Path, source: Path) -> str:
    parts = list(path.relative_to(source.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str, source: Path = SOURCE) -> str:
    parts = module.split(".")
    if len(parts) < 2:
        return ""
    folder = parts[1]
    return folder if (source / folder).is_dir() else ""


def imports_of(path: Path, source: Path) -> set[str]:
    """Every module of the package that ``path`` imports, resolved to absolute names."""
    module = module_name(path, source)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            # "from . import x" may name a sub-module: count both the package and x.
            names = [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(n for n in names if n == PACKAGE or n.startswith(PACKAGE + "."))
    return {name for name in found if is_module(name, source)}


def is_module(name: str, source: Path) -> bool:
    """Whether ``name`` is a module or package of the source tree (not an attribute)."""
    relative = Path(*name.split(".")[1:]) if "." in name else Path()
    return (source / relative).with_suffix(".py").is_file() or (source / relative).is_dir()


def import_graph(source: Path = SOURCE) -> dict[str, set[str]]:
    graph = {}
    for path in sorted(source.rglob("*.py")):
        module = module_name(path, source)
        graph[module] = {m for m in imports_of(path, source) if m not in (module, PACKAGE)}
    return graph


def test_every_folder_has_a_rank():
    folders = {p.name for p in SOURCE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders <= set(LAYERS), f"give {sorted(folders - set(LAYERS))} a rank in LAYERS"


def upward_imports(source: Path = SOURCE) -> list[str]:
    def rank(module: str) -> int:
        return LAYERS[layer_of(module, source)]

    return [
        f"{module} ({layer_of(module, source) or 'shared'}) imports {target} "
        f"({layer_of(target, source) or 'shared'})"
        for module, targets in import_graph(source).items()
        for target in sorted(targets)
        if rank(target) > rank(module)
    ]


def test_no_import_from_a_higher_layer():
    problems = upward_imports()
    assert not problems, "imports from a higher layer:\n" + "\n".join(problems)


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as a list of modules (first == last), or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            # A package's __init__ re-exporting its own modules is not a cycle of concern.
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ],
)
def test_the_cycle_finder_finds_cycles(graph, expected):
    assert find_cycle(graph) == expected


def test_the_layer_check_sees_upward_imports(tmp_path):
    """The check is not vacuous: relative, absolute and lazy upward imports are reported."""
    source = tmp_path / PACKAGE
    for folder in ("", "kek", "jobs"):
        (source / folder).mkdir(parents=True, exist_ok=True)
        (source / folder / "__init__.py").write_text("")
    (source / "jobs" / "common.py").write_text("from ..kek import base\n")
    (source / "kek" / "base.py").write_text("from ..errors import X\n")
    (source / "errors.py").write_text("X = 1\n")
    assert upward_imports(source) == []
    (source / "kek" / "base.py").write_text(
        "def f():\n    from envelope_encryption.jobs.common import g\n"
    )
    assert upward_imports(source) == [
        "envelope_encryption.kek.base (kek) imports envelope_encryption.jobs.common (jobs)"
    ]
