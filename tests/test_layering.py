"""Data flows one way (DESIGN.md): domains → stages/common → one stage → pipelines.

An AST walk over every module, lazy (function-level) imports included, because a lazy import is
still a dependency: it just fails later. ``bench/`` sits outside the layers and is exempt.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.parsed_sources import REPO, modules, parsed


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for every import in ``path``, relative ones resolved."""
    tree = parsed(path)
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from pkg import sub` may name a submodule: report both so either rule can fire
            yield node.lineno, module
            for alias in node.names:
                yield node.lineno, f"{module}.{alias.name}"


def _violations(package: str, forbidden) -> list[str]:
    found = []
    for path in modules(package):
        for line, module in _imports(path):
            reason = forbidden(path, module)
            if reason:
                found.append(f"{path.relative_to(REPO)}:{line} imports {module} ({reason})")
    return sorted(set(found))


def _stage_of(path: Path) -> str | None:
    rel = path.relative_to(REPO).parts
    return rel[1] if rel[0] == "stages" and len(rel) > 2 else None


def _top(module: str) -> str:
    return module.split(".")[0]


def test_domains_import_no_stage_and_no_pipeline() -> None:
    def forbidden(path: Path, module: str) -> str | None:
        if _top(module) in ("stages", "pipelines", "bench"):
            return "domains are plug-ins the stages call, never the other way round"
        return None

    assert _violations("domains", forbidden) == []


def test_stages_never_import_pipelines() -> None:
    def forbidden(path: Path, module: str) -> str | None:
        if _top(module) in ("pipelines", "bench"):
            return "pipelines drive stages; shared contracts live in stages/common"
        return None

    assert _violations("stages", forbidden) == []


def test_stages_common_imports_no_stage() -> None:
    def forbidden(path: Path, module: str) -> str | None:
        if _stage_of(path) != "common":
            return None
        parts = module.split(".")
        if parts[0] == "stages" and len(parts) > 1 and parts[1] != "common":
            return "stages/common is shared by every stage and must import none"
        return None

    assert _violations("stages", forbidden) == []


def test_a_stage_imports_no_other_stage() -> None:
    def forbidden(path: Path, module: str) -> str | None:
        own = _stage_of(path)
        parts = module.split(".")
        if own is None or parts[0] != "stages" or len(parts) < 2:
            return None
        if parts[1] not in (own, "common") and (REPO / "stages" / parts[1]).is_dir():
            return f"stage {own} reaches into stage {parts[1]}; move the shared part to stages/common"
        return None

    assert _violations("stages", forbidden) == []


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle in ``graph`` (as a path), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


@pytest.mark.parametrize("package", ["stages/common/losses", "stages/common", "domains"])
def test_no_import_cycle_inside(package: str) -> None:
    paths = modules(package)
    names = {_module_name(p): p for p in paths}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        # a package's __init__ re-exporting its own modules is how a package is built, not a cycle
        deps = {m for _, m in _imports(path) if m in names and m != name}
        if path.name == "__init__.py":
            deps = {d for d in deps if not d.startswith(name + ".")}
        graph[name] = deps
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph) or [])}"


def test_the_checker_sees_lazy_imports() -> None:
    """The rules above are only as good as the import parser: it must see imports inside functions
    (stages/curate/semantic.py imports the encoders lazily, inside a function)."""
    found = {m for _, m in _imports(REPO / "stages" / "curate" / "semantic.py")}
    assert "stages.common.encoders" in found
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    assert _cycle(graph) == ["a", "b", "c", "a"]
