"""The README's cluster path, run as written: start a head with the job server, ``ray job submit``
a tiny recipe with ``--working-dir .``, find its outputs where the recipe's paths say, stop the head.

The commands are read from the README's "Running on a Ray cluster" section, so the documentation
cannot drift from what is tested. The test substitutes free ports for 6379/8265 and a temporary
directory for ``/tmp/contraflow``, adds flags that keep its head apart from any other Ray on the
machine (its own ``--temp-dir``, ``127.0.0.1``, a CPU count), and stops only its own head's
processes where the README says ``ray stop`` (which would stop every Ray instance on the machine).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BIN, REPO, copy_project, free_ports, short_temp_dir, stop_ray_processes

pytestmark = [pytest.mark.e2e, pytest.mark.cluster]
RECIPE = "timeseries-gunpoint"


def readme_cluster_commands() -> list[list[str]]:
    """The commands of the first ``bash`` block in the README's "Running on a Ray cluster"."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Running on a Ray cluster", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "no bash block in the README's cluster section"
    return [shlex.split(line) for line in block.group(1).replace("\\\n", " ").splitlines() if line.strip()]


@pytest.fixture
def head_temp() -> Iterator[Path]:
    """The head's ``--temp-dir``: short, as Ray's socket paths under it are capped."""
    with short_temp_dir("job") as temp:
        yield temp


def test_readme_commands_start_submit_and_stop(
    tmp_path_factory: pytest.TempPathFactory, head_temp: Path
) -> None:
    commands = readme_cluster_commands()
    assert [c[:2] for c in commands] == [["ray", "start"], ["ray", "job"], ["ray", "stop"]], commands
    tmp_path = tmp_path_factory.mktemp("job")
    proj = copy_project(tmp_path / "proj")
    shutil.copy(REPO / ".rayignore", proj / ".rayignore")
    out = tmp_path / "out"
    gcs, dash, client, agent, agent_grpc, runtime_env, metrics = free_ports(7)
    temp = head_temp

    def local(cmd: list[str]) -> list[str]:
        subs = {"6379": str(gcs), "8265": str(dash), "/tmp/contraflow": str(out)}
        args = []
        for a in cmd[1:]:
            for k, v in subs.items():
                a = a.replace(k, v)
            args.append(a)
        return [str(BIN / "ray"), *args]

    # the job's `python` is the project's interpreter, as on a node whose environment is active
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    start, submit, _stop = commands
    isolation = [
        f"--temp-dir={temp}",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=4",
        f"--ray-client-server-port={client}",  # not the default 10001 another head may hold
        # the job server needs this head's dashboard agent; its default ports (52365...) may be held
        # by another Ray on the machine (the test session's own head), which fails every submit
        f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--runtime-env-agent-port={runtime_env}",
        f"--metrics-export-port={metrics}",
    ]
    started = subprocess.run(
        local(start) + isolation, cwd=proj, env=env, capture_output=True, text=True, timeout=120
    )
    assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
    # the README's head does not report usage to Ray's servers (README: Running on a Ray cluster)
    assert "Usage stats collection is disabled" in started.stdout + started.stderr
    try:
        job = subprocess.run(local(submit), cwd=proj, env=env, capture_output=True, text=True, timeout=600)
        log = job.stdout + job.stderr
        assert job.returncode == 0, log[-4000:]
        assert "succeeded" in log, log[-4000:]
    finally:
        stop_ray_processes(temp, gcs, cwd=proj)  # the README's `ray stop`, limited to this head
    # outputs where the recipe's paths say: <paths.x>/<recipe>/...
    assert (out / "models" / RECIPE / "pretrained" / "encoder.safetensors").exists()
    evaluation = json.loads((out / "metrics" / RECIPE / "evaluate.json").read_text())
    assert evaluation, "empty evaluation"
    assert any((out / "data" / RECIPE / "curated").iterdir())
    assert any((out / "runs" / RECIPE).glob("pretrain-*"))
    # nothing was written into the uploaded working directory's copy on the submitting side
    assert not (proj / "models").exists() and not (proj / "data").exists()
