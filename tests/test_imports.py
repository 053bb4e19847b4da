"""Imports flow one way: no askgate module imports itself back through others.

Read from the sources, not by importing them, so that an import hidden under
`if TYPE_CHECKING:` or inside a function counts too: such an import hides a cycle
rather than removing it.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

import askgate

PACKAGE = Path(askgate.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imported(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            # `from askgate.auth import service` imports a module, not a name
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    return {
        name: {
            target
            for target in _imported(ast.parse(path.read_text()))
            if target in MODULES and target != name
        }
        for name, path in MODULES.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read() -> None:
    graph = import_graph()
    assert "askgate.app" in graph
    assert "askgate.config" in graph["askgate.app"]


def test_no_module_imports_itself_back() -> None:
    assert cycles(import_graph()) == []


def test_a_cycle_would_be_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


# askgate speaks to upstreams over aiohttp only; the openai SDK is a test tool.
LLM_SDKS = {"openai", "anthropic", "litellm", "langchain", "langchain_openai"}


def test_no_llm_sdk_is_imported() -> None:
    offenders = {
        f"{name} imports {target}"
        for name, path in MODULES.items()
        for target in _imported(ast.parse(path.read_text()))
        if target.split(".")[0] in LLM_SDKS
    }
    assert offenders == set()
