"""End-to-end scaffolding shared by every ``-m e2e`` test: run a recipe at the ``tiny`` scale in a
project copy, check what every run must satisfy, and hand back its outputs.

``run_tiny(proj, ray_address, recipe)`` runs ``pipelines.run`` (one driver process, the stages in
order, as on a cluster; forked from a server that has the imports done) on the session's Ray
instance and asserts the contract of a successful run: exit code 0, no traceback, and every output
``dvc.yaml`` declares for the recipe (or ``dvc repro`` would fail where this passes). ``recipe`` is
a recipe's name under ``pipelines/`` or a recipe dict (written to ``pipelines/<name>.yaml``, e.g.
pointing ``data`` at files a test made).

Tests use the session fixture ``run_tiny`` in ``tests/conftest.py``: one project copy for the session
(each recipe writes under its own name) and one run per distinct call, so tests that assert on the
same outputs share a single pipeline run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import BIN, missing_dvc_outputs


def tiny_env(ray_address: str) -> dict[str, str]:
    """The environment a stage sees under ``make repro``: the session's Ray, the venv's tools first."""
    return {
        **os.environ,
        "RAY_ADDRESS": ray_address,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "PYTHONUNBUFFERED": "1",
    }


@dataclass(frozen=True)
class TinyRun:
    """A finished tiny run: its project copy, recipe name and log, and readers for its outputs."""

    proj: Path
    name: str
    log: str

    def path(self, rel: str) -> Path:
        """``proj/rel`` with ``{name}`` replaced by the recipe's name (``models/{name}/pretrained``)."""
        return self.proj / rel.format(name=self.name)

    def metrics(self, stage: str) -> dict[str, Any]:
        """``metrics/<recipe>/<stage>.json`` parsed."""
        return json.loads(self.path(f"metrics/{{name}}/{stage}.json").read_text())

    @cached_property
    def evaluation(self) -> dict[str, Any]:
        return self.metrics("evaluate")

    @cached_property
    def report(self) -> str:
        return self.path("reports/{name}/report.md").read_text()


def write_recipe(proj: Path, recipe: dict[str, Any], tiny: dict[str, Any] | None = None) -> str:
    """Write ``recipe`` as ``pipelines/<name>.yaml`` (``tiny`` as its ``scales.tiny``); its name."""
    body = dict(recipe)
    if tiny is not None:
        body["scales"] = {**body.get("scales", {}), "tiny": tiny}
    (proj / "pipelines" / f"{recipe['name']}.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    return recipe["name"]


#: what every run imports, loaded once by the fork server (see ``_launch``): torch, Ray, the stages
_PRELOAD = [
    "pipelines.run",
    *(
        f"stages.{stage}.__main__"
        for stage in ("ingest", "curate", "views", "pretrain", "finetune", "evaluate")
    ),
]


def _driver(proj: str, argv: list[str], env: dict[str, str], out: str, err: str) -> None:
    """``python -m pipelines.run ARGV`` in ``proj`` with ``env``, its output in ``out``/``err``."""
    os.chdir(proj)
    os.environ.clear()
    os.environ.update(env)
    for stream, path in ((1, out), (2, err)):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, stream)
        os.close(fd)
    import traceback

    from pipelines import run

    try:
        code = run.main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - what an uncaught exception does to `python -m`
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _launch(proj: Path, argv: list[str], env: dict[str, str], timeout: int) -> tuple[int, str, str]:
    """Run ``pipelines.run`` as a fresh process forked from a fork server that has already imported
    torch, Ray and the stages: the same isolation as ``python -m pipelines.run`` (own process, own Ray
    driver, own exit code) without paying the seconds of imports on every run (``multiprocessing``'s
    ``forkserver``: a clean interpreter that imports ``_PRELOAD`` once, never initialises Ray or
    torch's thread pools, and forks one child per run; OpenBLAS and Arrow, whose idle threads it
    holds, reinitialise them after a fork)."""
    import multiprocessing
    import tempfile

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    with tempfile.TemporaryDirectory() as logs:
        out, err = os.path.join(logs, "stdout"), os.path.join(logs, "stderr")
        proc = ctx.Process(target=_driver, args=(str(proj), argv, env, out, err))
        proc.start()
        proc.join(timeout)
        if proc.is_alive():
            proc.kill()
            proc.join()
            raise subprocess.TimeoutExpired(["pipelines.run", *argv], timeout)
        # (a child that died before redirecting its output leaves no file: the exit code says it)
        text = [Path(f).read_text() if os.path.exists(f) else "" for f in (out, err)]
        return proc.exitcode, text[0], text[1]


def run_tiny(
    proj: Path,
    ray_address: str,
    recipe: str | dict[str, Any],
    *,
    tiny: dict[str, Any] | None = None,
    sets: Sequence[str] = (),
    stages: Sequence[str] | None = None,
    timeout: int = 900,
) -> TinyRun:
    """Run ``recipe`` (a name under ``pipelines/`` or a recipe dict) at the tiny scale in ``proj``.

    ``tiny`` replaces a recipe dict's ``scales.tiny``; ``sets`` are extra ``--set KEY=VALUE``;
    ``stages`` runs only those (in pipeline order), and then only their declared outputs must exist.
    """
    assert tiny is None or isinstance(recipe, dict), "tiny= is for a recipe dict; use sets= for a name"
    name = write_recipe(proj, recipe, tiny) if isinstance(recipe, dict) else recipe
    argv = [f"pipelines/{name}.yaml", "--set", "scale=tiny"]
    for s in sets:
        argv += ["--set", s]
    if stages is not None:
        argv += ["--stages", ",".join(stages)]
    code, stdout, stderr = _launch(proj, argv, tiny_env(ray_address), timeout)
    log = stdout + stderr
    assert code == 0, f"{name}: exit {code}\n{log[-4000:]}"
    # the stage times, shown by `pytest -s` (and in the failure report of a test using the run)
    print(*(line for line in stdout.splitlines() if " done in " in line), sep="\n")
    assert "Traceback" not in stderr, stderr[-4000:]
    # Ray Train's placement-group cleaner, asking a state API that runs only with the dashboard
    assert "Failed to query Ray Train Controller actor state" not in log, log[-4000:]
    # every node is this machine: the stage turns Ray Train's preemption watcher (an actor that
    # polls for drained nodes, ~2 s of start-up) off, and Ray logs its creation when it is on
    assert "PreemptionWatcher" not in log, log[-4000:]
    # every output dvc.yaml declares for the recipe, or `dvc repro` would fail where this passes
    missing = [m for m in missing_dvc_outputs(proj, name) if stages is None or m.split(":")[0] in stages]
    assert not missing, f"{name}: outputs dvc.yaml declares were not written: {missing}"
    return TinyRun(proj, name, log)
