"""End to end at the `tiny` scale: `dvc repro` of the time-series recipe on a shared Ray instance,
an interrupted `dvc repro` (killed in pretraining, stopped in fine-tuning) finished, and a
`dvc exp run` that reruns only what its parameter feeds. One project for the module: each test builds on the last."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, copy_project

pytestmark = pytest.mark.e2e
RECIPE = "timeseries-gunpoint"
#: the interrupted run's budget: the first checkpoint after epoch EVERY - 1, where the kill lands
EPOCHS, EVERY = 12, 4


def _env(ray_address: str) -> dict[str, str]:
    return {
        **os.environ,
        "RAY_ADDRESS": ray_address,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "PYTHONUNBUFFERED": "1",
    }


def _run(cmd: list[str], cwd: Path, env: dict, timeout: int = 600) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{out[-4000:]}"
    return out


def _ran(log: str) -> set[str]:
    return {m.split("@")[0] for m in re.findall(r"Running stage '([^']+)'", log)}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, ray_address: str) -> tuple[Path, dict, str]:
    proj = copy_project(tmp_path_factory.mktemp("e2e"))
    (proj / ".dvc" / "config").unlink()
    (proj / ".dvc").rmdir()
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["scale"] = "tiny"
    params["domains"] = {RECIPE: {"domain": "timeseries"}}
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = _env(ray_address)
    _run(["git", "init", "-q"], proj, env)
    _run([str(BIN / "dvc"), "init", "-q"], proj, env)
    log = _run([str(BIN / "dvc"), "repro"], proj, env, timeout=900)
    return proj, env, log


def test_repro_runs_six_stages_and_reports_three_encoders(project: tuple[Path, dict, str]) -> None:
    proj, env, log = project
    assert _ran(log) == {"configure", "ingest", "curate", "views", "pretrain", "finetune", "evaluate"}
    metrics = json.loads(_run([str(BIN / "dvc"), "metrics", "show", "--json"], proj, env))
    flat = json.dumps(metrics)
    ev = json.loads((proj / f"metrics/{RECIPE}/evaluate.json").read_text())
    for encoder in ("pretrained", "random_init"):
        for probe in ("svm", "linear", "knn"):
            assert 0.0 <= ev[encoder][probe] <= 1.0
    assert 0.0 <= ev["supervised"]["accuracy"] <= 1.0
    assert '"svm"' in flat and '"supervised"' in flat  # dvc metrics show sees them
    assert (proj / f"models/{RECIPE}/pretrained/encoder.safetensors").exists()
    report = (proj / f"reports/{RECIPE}/report.md").read_text()
    assert "Frozen-feature probes" in report and "views_preview.png" in report
    ingest = json.loads((proj / f"metrics/{RECIPE}/ingest.json").read_text())
    assert ingest["rows"] == 200 and ingest["rejected"] == 0


def test_interrupted_dvc_repro_finishes_on_the_next_run(
    project: tuple[Path, dict, str], tmp_path: Path
) -> None:
    """`dvc repro` SIGKILLed in pretraining (as a lost machine or Ctrl-\\ would), then stopped by Ctrl-C
    (SIGINT) in fine-tuning, and run again: pretraining resumes from its latest checkpoint with its
    history whole (nothing lost, nothing repeated), and the last run completes and leaves DVC up to
    date."""
    proj, env, _ = project
    recipe = proj / f"pipelines/{RECIPE}.yaml"
    cfg = yaml.safe_load(recipe.read_text())
    cfg["pretrain"]["lr"] = 0.002
    cfg["scales"]["tiny"]["pretrain"].update(epochs=EPOCHS, checkpoint_every=EVERY)
    recipe.write_text(yaml.safe_dump(cfg, sort_keys=False))

    def start(log: Path) -> subprocess.Popen:
        return subprocess.Popen(
            [str(BIN / "dvc"), "repro"],
            cwd=proj,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Ctrl-C must reach DVC as it does from a terminal: a test run started in the background
            # of a non-interactive shell (`make test &`) inherits SIGINT ignored, and DVC, its stages
            # and Python keep it ignored (the fresh-clone check failed on this)
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )

    def wait_for(proc: subprocess.Popen, ready: Callable[[], bool], what: str) -> None:
        deadline = time.time() + 400
        while not ready():
            assert proc.poll() is None, f"dvc repro ended before {what}"
            assert time.time() < deadline, f"timed out waiting for {what}"
            time.sleep(0.2)

    runs = proj / "runs" / RECIPE
    before = set(runs.iterdir())

    def checkpointed() -> bool:
        return any(
            "checkpoint_dir_name" in s.read_text()
            for d in set(runs.iterdir()) - before
            if (s := d / "checkpoint_manager_snapshot.json").exists()
        )

    first = start(tmp_path / "1.log")
    wait_for(first, checkpointed, "a pretraining checkpoint")
    os.killpg(first.pid, signal.SIGKILL)  # the whole process group: dvc, the stage, its Ray driver
    first.wait()

    second = start(tmp_path / "2.log")
    wait_for(second, lambda: "Running stage 'finetune@" in (tmp_path / "2.log").read_text(), "fine-tuning")
    os.killpg(second.pid, signal.SIGINT)  # Ctrl-C in the terminal
    assert second.wait(timeout=120) != 0
    m = re.search(r"resuming from checkpoint at epoch (\d+)", (tmp_path / "2.log").read_text())
    # at or after the first checkpoint's epoch
    assert m and int(m.group(1)) >= EVERY - 1, (tmp_path / "2.log").read_text()[-3000:]

    log = _run([str(BIN / "dvc"), "repro"], proj, env, timeout=900)
    assert "finetune@" in log and "evaluate@" in log
    status = _run([str(BIN / "dvc"), "status"], proj, env)
    assert "up to date" in status.lower()
    # a killed stage may leave a `<out>.tmp-*` sibling behind, never a half-written `<out>` itself
    assert (proj / f"models/{RECIPE}/finetuned").is_dir()
    pre = json.loads((proj / f"metrics/{RECIPE}/pretrain.json").read_text())
    assert pre["epochs"] == EPOCHS
    loss_tsv = (proj / f"metrics/{RECIPE}/pretrain/plots/metrics/loss.tsv").read_text().splitlines()
    assert len(loss_tsv) == 1 + EPOCHS  # a header and one row per epoch: the resumed history is whole


def test_dvc_experiment_varies_a_recipe_key_and_diffs_its_metrics(project: tuple[Path, dict, str]) -> None:
    """The README's experiment workflow: `dvc exp run -S <recipe>:key=value` reruns only what the key
    feeds (a changed parameter never reruns ingest, curate or views; one repro checks this for both
    `dvc repro` and `dvc exp run`, which reproduces the same graph), leaves DVC up to date, and
    `dvc exp show` / `dvc params diff` / `dvc metrics diff` compare it with the commit."""
    proj, env, _ = project
    dvc = str(BIN / "dvc")
    env = {
        **env,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    gitignore = proj / ".gitignore"  # git tracks metrics/, as in the repository itself
    gitignore.write_text(gitignore.read_text().replace("/metrics/\n", ""))
    _run(["git", "add", "-A"], proj, env)
    _run(["git", "commit", "-qm", "baseline"], proj, env)
    before = json.loads((proj / f"metrics/{RECIPE}/pretrain.json").read_text())

    log = _run(
        [dvc, "exp", "run", "-n", "lr5e-4", "-S", f"pipelines/{RECIPE}.yaml:pretrain.lr=0.0005"],
        proj,
        env,
        timeout=900,
    )
    assert _ran(log) == {"configure", "pretrain", "finetune", "evaluate"}
    assert "up to date" in _run([dvc, "status"], proj, env).lower()
    assert "lr5e-4" in _run([dvc, "exp", "show", "--csv"], proj, env)
    params = json.loads(_run([dvc, "params", "diff", "--json"], proj, env))
    change = params[f"pipelines/{RECIPE}.yaml"]["pretrain.lr"]
    assert (change["old"], change["new"]) == (0.002, 0.0005)
    diff = json.loads(_run([dvc, "metrics", "diff", "--json"], proj, env))
    pre = diff[f"metrics/{RECIPE}/pretrain.json"]["final_loss"]
    assert pre["old"] == before["final_loss"] and pre["new"] != pre["old"]
    assert f"metrics/{RECIPE}/evaluate.json" in json.dumps(
        json.loads(_run([dvc, "metrics", "show", "--json"], proj, env))
    )
