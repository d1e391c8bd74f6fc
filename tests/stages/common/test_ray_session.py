"""The environment Ray workers of a local instance get from the driver."""

from __future__ import annotations

import os

import pytest

from stages.common.ray_session import REPO_ROOT, worker_pythonpath
from tests.conftest import imported_in_fresh_interpreter


def test_workers_see_the_checkout_and_keep_the_drivers_pythonpath(monkeypatch: pytest.MonkeyPatch) -> None:
    """A runtime_env PYTHONPATH replaces the worker's: packages found through the driver's own
    PYTHONPATH (an extra site dir, say) must stay importable in the workers."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["/opt/site", REPO_ROOT, "/opt/plugins"]))
    assert worker_pythonpath().split(os.pathsep) == [REPO_ROOT, "/opt/site", "/opt/plugins"]


def test_relative_entries_are_the_drivers(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", "plugins")
    assert worker_pythonpath().split(os.pathsep) == [REPO_ROOT, str(tmp_path / "plugins")]


def test_without_a_pythonpath_workers_get_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTHONPATH", raising=False)
    assert worker_pythonpath() == REPO_ROOT


def test_the_worker_setup_hook_module_imports_nothing_heavy() -> None:
    """Every Ray worker of a stage imports this module first (``worker_process_setup_hook``): it must
    not pull pydantic, torch or Ray in (pydantic alone made it 0.17 s per worker process)."""
    heavy = ("pydantic", "torch", "ray", "numpy")
    assert imported_in_fresh_interpreter("import stages.common.ray_session", heavy) == []
