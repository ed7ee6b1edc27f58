"""Architecture rules, read from the syntax tree of every module: every import counts, wherever it is written
(module level, inside functions, under `if TYPE_CHECKING:`), and nothing is allowed as an exception.

- No import cycles between the project's modules.
- The apps depend one way, labs → courses: nothing in courses imports labs (courses reaches labs through
  `courses.extensions`, which the labs app registers).
- `core` depends on no app.
- Code cells (kernels) depend on courses and the sandbox; courses renders cells as plain markup and never imports
  kernels, and labs does not either.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("config", "core", "courses", "labs", "kernels")
# Course content (starter code, grader bundles) is data that runs in sandboxes, not platform code.
DATA_FOLDERS = {REPO_ROOT / "courses" / "content"}


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (REPO_ROOT / package).rglob("*.py"):
            if any(folder in path.parents for folder in DATA_FOLDERS):
                continue
            parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The project module that `name` (a module, or a name inside one) belongs to."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = module.split(".") if is_package else module.split(".")[:-1]
                    package = package[: len(package) - (node.level - 1)]
                    base = ".".join([*package, base] if base else package)
                for alias in node.names:
                    full = f"{base}.{alias.name}" if base else alias.name
                    targets.add(full if full in modules else base)
        graph[module] = {owner for t in targets if (owner := _owner(t, modules)) and owner != module}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

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
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def _edges(graph: dict[str, set[str]], *, source: str, target: str) -> list[str]:
    def inside(module: str, package: str) -> bool:
        return module == package or module.startswith(package + ".")

    return sorted(f"{m} -> {t}" for m, ts in graph.items() if inside(m, source) for t in ts if inside(t, target))


def test_no_module_imports_itself_through_others():
    assert find_cycles(import_graph()) == []


def test_courses_never_imports_labs():
    assert _edges(import_graph(), source="courses", target="labs") == []


def test_core_imports_no_app():
    graph = import_graph()
    assert [
        *_edges(graph, source="core", target="courses"),
        *_edges(graph, source="core", target="labs"),
        *_edges(graph, source="core", target="kernels"),
    ] == []


def test_courses_and_labs_never_import_kernels():
    graph = import_graph()
    assert [*_edges(graph, source="courses", target="kernels"), *_edges(graph, source="labs", target="kernels")] == []


def test_kernels_reach_labs_only_through_the_sandbox():
    edges = _edges(import_graph(), source="kernels", target="labs")
    assert edges and all(edge.split(" -> ")[1].startswith("labs.sandbox") for edge in edges)


def test_the_graph_reader_sees_imports_inside_functions_and_type_checking_blocks(tmp_path, monkeypatch):
    # The rules above are only as good as the reader: prove it finds the imports that hide best.
    for name, text in {
        "a/__init__.py": "",
        "a/one.py": "def f():\n    from a import two\n",
        "a/two.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from a.one import f\n",
        "a/three.py": "from . import two\n",
    }.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "REPO_ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGES", ("a",))
    monkeypatch.setattr(sys.modules[__name__], "DATA_FOLDERS", set())

    graph = import_graph()

    assert graph["a.three"] == {"a.two"}
    assert find_cycles(graph) == [["a.one", "a.two"]]
