"""The project's modules form no import circle, counting module-level and ``TYPE_CHECKING`` imports.

A type is a dependency too, so ``if TYPE_CHECKING:`` imports count; imports inside functions (kept
there for laziness) do not. Dependencies point one way: ``server_app`` and ``node_app`` import
``vantage6nb.common`` and never each other; ``vantage6nb.common`` imports nothing of the project
outside itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("vantage6nb", "server_app", "node_app")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports at module level, including under ``if``/``try`` blocks, not inside functions/classes."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, field, []) or []:
                    stack.extend(child.body if isinstance(child, ast.ExceptHandler) else [child])
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (a ``from pkg import name`` counts ``pkg.name`` when
    that is a module, else ``pkg``)."""
    modules = {
        _module_name(p): p
        for pkg in PACKAGES
        for p in (REPO / pkg).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        deps: set[str] = set()
        for node in _top_level_imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = name.split(".")
                    base = base if is_pkg else base[:-1]
                    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                targets = [
                    f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix
                    for a in node.names
                ]
            for target in targets:
                while target and target not in modules:  # a name inside a module: the module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _is_parent_package_edge(a: str, b: str) -> bool:
    # A package's __init__ re-exporting its own submodules is not a dependency circle.
    return b.startswith(a + ".") or a.startswith(b + ".")


def test_no_import_circles() -> None:
    graph = {
        m: {d for d in deps if not _is_parent_package_edge(m, d)}
        for m, deps in import_graph().items()
    }
    assert _cycles(graph) == []


def test_dependencies_point_one_way() -> None:
    bad = []
    for module, deps in import_graph().items():
        for dep in deps:
            if module.startswith("server_app") and dep.startswith("node_app"):
                bad.append((module, dep))
            if module.startswith("node_app") and dep.startswith("server_app"):
                bad.append((module, dep))
            if (
                (module.startswith(("server_app", "node_app")))
                and dep.startswith("vantage6nb")
                and not dep.startswith("vantage6nb.common")
            ):
                bad.append((module, dep))
            if module.startswith("vantage6nb.common") and not dep.startswith("vantage6nb.common"):
                bad.append((module, dep))
            if module.startswith("vantage6nb.client") and dep.startswith("vantage6nb.widgets"):
                bad.append((module, dep))
    assert bad == []


def test_the_graph_sees_a_known_edge() -> None:
    """The reader itself works: a dependency that exists is found."""
    assert "vantage6nb.common.schemas" in import_graph()["server_app.serializers"]
