"""The audio-digits recipe end to end at the `tiny` scale, on the shared Ray instance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from domains.audio.readers import asterisk_voices
from tests.conftest import BIN, copy_project, missing_dvc_outputs, requires_data

pytestmark = [
    pytest.mark.e2e,
    requires_data(
        len(asterisk_voices()) >= 2, reason="real-speech evaluation data missing: make system-deps (Asterisk)"
    ),
]
RECIPE = "audio-digits"


def test_tiny_recipe_pretrains_and_reports_on_real_speakers(tmp_path: Path, ray_address: str) -> None:
    proj = copy_project(tmp_path)
    env = {**os.environ, "RAY_ADDRESS": ray_address, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.run", f"pipelines/{RECIPE}.yaml", "--set", "scale=tiny"],
        cwd=proj,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    # every output dvc.yaml declares for the recipe, or `dvc repro` would fail where this passes
    assert not missing_dvc_outputs(proj, RECIPE)

    ingest = json.loads((proj / f"metrics/{RECIPE}/ingest.json").read_text())
    assert ingest["rows"] == 40 + 60 and ingest["rejected"] == 0  # 2 languages x 2 voices x 10 + Asterisk
    ev = json.loads((proj / f"metrics/{RECIPE}/evaluate.json").read_text())
    # the probes are fit on real training speakers only and scored on the two held-out speakers
    assert ev["n_train"] == 40 and ev["n_test"] == 20 and ev["n_classes"] == 10
    for enc in ("pretrained", "random_init"):
        assert 0.0 <= ev[enc]["linear"] <= 1.0
    assert 0.0 <= ev["supervised"]["accuracy"] <= 1.0
    dom = ev["domain"]
    assert dom["test_speakers"] == ["Carlo", "June"] and len(dom["speakers"]) == 5
    assert set(dom["loso"]) == {"mfcc_logreg", "pretrained", "random_init"}
    assert set(dom["split"]["mfcc_logreg"]["per_speaker"]) == {"Carlo", "June"}
    report = (proj / f"reports/{RECIPE}/report.md").read_text()
    assert "Speech digits on real speakers" in report and "Frozen-feature probes" in report
    assert (proj / f"models/{RECIPE}/pretrained/encoder.safetensors").exists()
