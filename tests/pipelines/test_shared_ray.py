"""``make repro``'s wrapper: one local Ray instance for every stage of a ``dvc repro``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from pipelines.shared_ray import recipes_num_cpus
from stages.common.ray_session import local_num_cpus
from stages.common.schema import RayCfg
from tests.conftest import REPO

ECHO = [sys.executable, "-c", "import os, sys; print('child', os.environ.get('RAY_ADDRESS')); sys.exit(3)"]


def _run(env: dict[str, str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pipelines.shared_ray", "--", *ECHO]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def _listening(port: int) -> bool:
    return any(c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in psutil.net_connections("tcp"))


@pytest.mark.e2e
def test_the_command_gets_one_instance_its_exit_code_and_nothing_is_left_running() -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = _run(env)
    assert proc.returncode == 3, proc.stdout + proc.stderr  # the command's own exit code
    child = [line for line in proc.stdout.splitlines() if line.startswith("child ")]
    assert len(child) == 1 and child[0] != "child None", proc.stdout
    address = child[0].split()[1]
    assert f"at {address} for:" in proc.stdout
    assert not _listening(int(address.rsplit(":", 1)[1]))  # the instance stopped with the command


def test_with_ray_address_set_nothing_is_started() -> None:
    proc = _run({**os.environ, "RAY_ADDRESS": "10.0.0.1:6379"})
    assert proc.returncode == 3 and "child 10.0.0.1:6379" in proc.stdout
    assert "shared_ray:" not in proc.stdout  # no instance of its own


def test_the_instance_has_the_most_cpus_any_recipe_would_start(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    demo = recipes_num_cpus(str(REPO / "params.yaml"))
    assert demo >= local_num_cpus(RayCfg())
    params.write_text("domains: {timeseries-gunpoint: {}, rl-cartpole: {}}\nray: {num_cpus: 7}\n")
    assert recipes_num_cpus(str(params)) == 7
