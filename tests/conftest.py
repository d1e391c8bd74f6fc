"""Shared fixtures: one Ray instance per test session, started as a real head node on 127.0.0.1.

Stages run in subprocesses (as DVC runs them) connect to it through RAY_ADDRESS instead of each
starting their own; in-process tests attach to it too.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# `ray start` turns on token authentication (Ray >= 2.5x) and clients must opt in to present the
# token. Ray reads this once per process, when it first initialises its config, so it must be set
# before any test touches Ray, not when the session's head node starts.
os.environ["RAY_AUTH_MODE"] = "token"
# ...and `ray start` (unlike `ray.init`) does not make the token it then requires: on a machine
# with no ~/.ray/auth_token (a fresh CI runner) every head the tests start failed with
# AuthenticationError. One random token per test session, passed to every process by the
# environment (Ray reads RAY_AUTH_TOKEN before the file), and nothing written to the user's home.
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))


def on_ci() -> bool:
    """``CI=true`` (GitHub Actions, GitLab and most CI systems set it)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def requires_data(present: bool, reason: str) -> pytest.MarkDecorator:
    """Skip a test whose data (e.g. a Debian package's files) is missing — but under ``CI=true``
    fail it instead: CI must never be green while a domain's tests silently did not run."""
    if present:
        return pytest.mark.skipif(False, reason=reason)
    return pytest.mark.data_missing(reason=reason) if on_ci() else pytest.mark.skip(reason=reason)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "data_missing(reason): data the test needs is missing (fails under CI)"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("data_missing")
    if marker is not None:
        pytest.fail(f"CI=true and data the test needs is missing: {marker.kwargs['reason']}", pytrace=False)


def imported_in_fresh_interpreter(code: str, modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has imported after running ``code`` in the checkout:
    what a stage process or Ray worker that runs the same imports pays for."""
    probe = f"import sys\n{code}\nprint(','.join(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    return [m for m in out.stdout.strip().split(",") if m]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: all held open while they are picked, so no two can coincide (one
    port picked at a time can come back twice, and Ray then refuses to start)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


@contextlib.contextmanager
def short_temp_dir(name: str) -> Iterator[Path]:
    """A fresh directory directly under the system temp dir, removed afterwards: the ``--temp-dir``
    of a Ray node a test starts. Ray's socket paths under it (``<dir>/session_<date>_<pid>/sockets/
    plasma_store``) must fit AF_UNIX's 107 bytes, which pytest's own temp dirs
    (``/tmp/pytest-of-<user>/pytest-<n>/popen-gw<k>/<name>0`` under pytest-xdist) can exceed."""
    path = Path(tempfile.mkdtemp(prefix=f"cf-{name}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    (port,) = free_ports(1)
    ray = str(BIN / "ray")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with short_temp_dir("ray") as temp:
        subprocess.run(
            [
                ray,
                "start",
                "--head",
                "--node-ip-address=127.0.0.1",
                f"--port={port}",
                "--num-cpus=4",
                "--include-dashboard=false",
                f"--temp-dir={temp}",
                "--disable-usage-stats",
            ],
            check=True,
            env=env,
            capture_output=True,
            cwd=temp,  # workers must not depend on the stage's working directory (as on a real cluster)
        )
        try:
            yield f"127.0.0.1:{port}"
        finally:
            stop_ray_processes(temp, port)


def stop_ray_processes(
    temp: Path, port: int, extra_pids: tuple[int, ...] = (), cwd: Path | None = None
) -> None:
    """Kill one Ray cluster started by the tests: its processes and their children.

    ``ray stop`` would stop every Ray on the machine, including other users' and other test
    sessions'; this finds only the processes whose command line names this cluster's temp dir or
    GCS port, or that run in the directory ``ray start`` ran in (``cwd``, default ``temp``).
    """
    import psutil

    procs: dict[int, psutil.Process] = {}
    for p in psutil.process_iter(["cmdline", "cwd"]):
        cmd = " ".join(p.info["cmdline"] or [])
        # the head's client server names neither: it binds the machine's address, and its parent
        # (`ray start`) has exited; it does run in the directory the cluster was started from
        where, home = p.info["cwd"] or "", str(cwd or temp)
        if (
            str(temp) in cmd
            or f"127.0.0.1:{port}" in cmd
            or f"gcs_server_port={port}" in cmd
            or where == home
            or where.startswith(home + os.sep)
        ):
            procs[p.pid] = p
    for pid in extra_pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            procs[pid] = psutil.Process(pid)
    for p in list(procs.values()):
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.update({c.pid: c for c in p.children(recursive=True)})
    for p in procs.values():
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(list(procs.values()), timeout=10)


@pytest.fixture(scope="session")
def ray_session(ray_address: str):  # noqa: ANN201
    import ray

    # the stages' worker setup hook too: Ray's own helpers in the job (Ray Train's placement-group
    # cleaner) then ask this instance, not the last head a cluster test started and killed
    hook = "stages.common.ray_session.setup_worker"
    ray.init(
        address=ray_address,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}, "worker_process_setup_hook": hook},
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def run_tiny(tmp_path_factory: pytest.TempPathFactory, ray_address: str):  # noqa: ANN201
    """``run_tiny(recipe, tiny=None, sets=())``: :func:`tests.e2e.run_tiny` in one project copy for
    the session (each recipe writes under its own name) on the session's Ray instance.

    A call repeated with the same arguments returns the first run (or re-raises its failure), so
    tests asserting on one run's outputs share it instead of running the pipeline again.
    """
    import json

    from tests import e2e

    proj = copy_project(tmp_path_factory.mktemp("tiny"))
    done: dict[str, e2e.TinyRun | BaseException] = {}

    def run(recipe: str | dict, **kwargs: object) -> e2e.TinyRun:
        key = json.dumps([recipe, kwargs], sort_keys=True, default=str)
        if key not in done:
            try:
                done[key] = e2e.run_tiny(proj, ray_address, recipe, **kwargs)
            except (AssertionError, subprocess.SubprocessError) as e:
                done[key] = e
        if isinstance(done[key], BaseException):
            raise done[key]
        return done[key]

    return run


def copy_project(dest: Path) -> Path:
    """A fresh project tree (code, recipes, DVC config) in ``dest`` for end-to-end runs."""
    for name in ("domains", "stages", "pipelines", "params.yaml", "dvc.yaml", ".dvc/config"):
        src = REPO / name
        target = dest / name
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, target)
    (dest / ".gitignore").write_text("/data/\n/models/\n/runs/\n/metrics/\n/reports/\n")
    return dest


def missing_dvc_outputs(proj: Path, recipe: str) -> list[str]:
    """Paths dvc.yaml declares (outs, metrics, plots) for ``recipe`` that a run did not write.

    ``pipelines.run`` runs the same stages without DVC; DVC fails a stage whose declared output is
    missing, so a recipe run end to end must leave every one of them (``configure`` aside: DVC-only).
    """
    import yaml

    stages = yaml.safe_load((proj / "dvc.yaml").read_text())["stages"]
    missing = []
    for name, stage in stages.items():
        if name == "configure":
            continue
        body = stage.get("do", stage)
        for key in ("outs", "metrics", "plots"):
            for entry in body.get(key, []):
                path = next(iter(entry)) if isinstance(entry, dict) else entry
                path = path.replace("${key}", recipe)
                if not (proj / path).exists():
                    missing.append(f"{name}: {path}")
    return missing
