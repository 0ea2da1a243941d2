"""The package's import graph: no circle (imports inside functions included), and no module
importing a layer above its own. The layer order is read from docs/architecture.md, so the
document and the code cannot drift apart."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "bench"
FOUNDATION = {"bench.defaults", "bench.errors", "bench.fsutil"}  # import nothing of bench
TOP = {"bench.cli", "bench.__main__"}  # the verb table and its entry point


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module of bench that `name` imports, anywhere in its body (a `from pkg import x`
    counts as importing pkg.x when x is a module, else pkg)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, path.name == "__init__.py", node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def layer_order() -> list[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    match = re.search(r"^Layer order, lowest first: (.+)$", text, flags=re.M)
    assert match, "docs/architecture.md must state 'Layer order, lowest first: a, b, ...'"
    return [name.strip(" `.") for name in match.group(1).split(",")]


def layer_of(module: str) -> str | None:
    if module in FOUNDATION:
        return "foundation"
    if module in TOP:
        return "cli"
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) \
        else None


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_circle() -> None:
    assert circles(graph()) == []


def test_the_circle_finder_sees_a_circle() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_belongs_to_a_layer_of_the_document() -> None:
    order = layer_order()
    unplaced = [m for m in modules() if m != "bench" and layer_of(m) not in order]
    assert unplaced == [], f"modules outside the layers of docs/architecture.md: {unplaced}"


def test_no_module_imports_a_layer_above_its_own() -> None:
    rank = {name: i for i, name in enumerate(layer_order())}
    upward = [f"{a} ({layer_of(a)}) imports {b} ({layer_of(b)})"
              for a, targets in graph().items() if a != "bench"
              for b in targets if b != "bench" and rank[layer_of(b)] > rank[layer_of(a)]]
    assert upward == []


def test_the_top_level_holds_only_the_foundation_and_the_verb_table() -> None:
    top = {module_name(p) for p in PACKAGE.glob("*.py")}
    assert top == FOUNDATION | TOP | {"bench"}
