"""Every project module's AST, parsed once while pytest collects, before any test runs.

Why at collection: CPython 3.11 keeps the AST constructor's recursion counter in state shared by
all threads (python/cpython#106905), so an ``ast.parse`` that runs while another thread of the
test process parses too (Ray Data inspects UDF source in its executor threads, and an earlier
test's dataset may still be streaming) can fail with "AST constructor recursion depth mismatch".
CI hit exactly that once. Collection runs before any test starts a Ray session or a thread.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("domains", "stages", "pipelines")


def modules(package: str) -> list[Path]:
    """Every module under ``package`` (a folder of the repository, e.g. ``stages/common``), sorted."""
    return sorted(p for p in (REPO / package).rglob("*.py") if ".venv" not in p.parts)


_TREES: dict[Path, ast.Module] = {
    p: ast.parse(p.read_text(), filename=str(p)) for pkg in PACKAGES for p in modules(pkg)
}


def parsed(path: Path) -> ast.Module:
    """The AST of ``path`` (a file under domains/, stages/ or pipelines/), parsed at collection."""
    path = path.resolve()
    if path not in _TREES:  # a file a test created after collection: parse it now
        _TREES[path] = ast.parse(path.read_text(), filename=str(path))
    return _TREES[path]
