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


def test_ray_helpers_in_a_worker_find_its_own_cluster_not_a_dead_one(ray_session) -> None:  # noqa: ANN001
    """Ray Train's placement-group cleaner asks the state API, which without an address auto-detects a
    cluster: from ``/tmp/ray/ray_current_cluster``, the last head ``ray start`` started, alive or
    not. Pointed at a dead GCS it waited 40 s per ask, and every training run's teardown waited out
    the cleaner's 12 s stop timeout. A dead address stands in for that stale file here."""
    import ray

    @ray.remote(num_cpus=0)
    def ask_state_api() -> tuple[str, float, str]:
        import time

        from ray.util.state import get_actor
        from ray.util.state.exception import RayStateApiException

        from stages.common.ray_session import API_SERVER_ENV, setup_worker

        saved = {k: os.environ.pop(k, None) for k in (API_SERVER_ENV, "RAY_ADDRESS")}
        os.environ["RAY_ADDRESS"] = "127.0.0.1:1"  # what a stale ray_current_cluster would say
        try:
            setup_worker()
            start = time.perf_counter()
            try:
                get_actor("ff" * 16, timeout=5)
                outcome = "answered"
            except RayStateApiException:  # no dashboard, so no state API: the cleaner's expected case
                outcome = "no state API"
            return os.environ[API_SERVER_ENV], time.perf_counter() - start, outcome
        finally:
            for k, v in saved.items():  # the worker process is shared with later tests
                os.environ.pop(k, None)
                if v is not None:
                    os.environ[k] = v

    address, seconds, outcome = ray.get(ask_state_api.remote())
    assert address == ray_session.get_runtime_context().gcs_address
    assert seconds < 5, f"the state API took {seconds:.1f} s ({outcome}): it looked for another cluster"
