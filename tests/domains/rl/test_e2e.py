"""The RL recipe end to end at the `tiny` scale on the shared Ray instance: rollouts collected as Ray
tasks, ATC pretraining under Ray Train, and the state-probe evaluation in the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BIN, copy_project, missing_dvc_outputs

pytestmark = pytest.mark.e2e
RECIPE = "rl-cartpole"


def test_tiny_recipe_collects_pretrains_and_probes_state(tmp_path: Path, ray_address: str) -> None:
    proj = copy_project(tmp_path)
    env = {
        **os.environ,
        "RAY_ADDRESS": ray_address,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [sys.executable, "-m", "pipelines.run", f"pipelines/{RECIPE}.yaml", "--set", "scale=tiny"]
    proc = subprocess.run(cmd, cwd=proj, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]

    ingest = json.loads((proj / f"metrics/{RECIPE}/ingest.json").read_text())
    assert ingest["units"] == 2 and ingest["rows"] > 50 and ingest["rejected"] == 0
    ev = json.loads((proj / f"metrics/{RECIPE}/evaluate.json").read_text())
    probe = ev["domain"]["state_probe"]
    for name in ("pretrained", "random_init", "supervised", "raw_pixels"):
        r2 = probe[name]["r2"]
        assert set(r2) == {"x", "x_dot", "theta", "theta_dot", "reward"}
        assert r2["reward"] is None  # CartPole's reward is constant: no R²
        assert all(v is None or v <= 1.0 for v in r2.values())
    # the cart's position is plainly visible: the raw-pixel probe must find it even at tiny scale
    assert probe["raw_pixels"]["r2"]["x"] > 0.5
    assert "svm" not in ev  # no classification probes for the RL domain
    report = (proj / f"reports/{RECIPE}/report.md").read_text()
    assert "State probe" in report and "theta_dot" in report
    assert (proj / f"models/{RECIPE}/pretrained/encoder.safetensors").exists()
    # fine-tuning has nothing to do for RL, but DVC still needs every declared output
    assert not missing_dvc_outputs(proj, RECIPE)
