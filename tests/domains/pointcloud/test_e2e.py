"""The pointcloud-sweethome3d recipe end to end at the `tiny` scale, on the shared Ray instance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from domains.pointcloud.readers import SH3D_DIR
from tests.conftest import BIN, copy_project, missing_dvc_outputs, requires_data

pytestmark = [
    pytest.mark.e2e,
    requires_data(
        os.path.isdir(SH3D_DIR),
        reason="Sweet Home 3D models missing: make system-deps (sweethome3d-furniture)",
    ),
]
RECIPE = "pointcloud-sweethome3d"


def test_tiny_recipe_samples_pretrains_and_reports_the_modelnet_protocol(
    tmp_path: Path, ray_address: str
) -> None:
    proj = copy_project(tmp_path)
    env = {**os.environ, "RAY_ADDRESS": ray_address, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.run", f"pipelines/{RECIPE}.yaml", "--set", "scale=tiny"],
        cwd=proj,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,  # minutes on an idle 2-core machine; generous for a shared, loaded one
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    # every output dvc.yaml declares for the recipe, or `dvc repro` would fail where this passes
    assert not missing_dvc_outputs(proj, RECIPE)

    ingest = json.loads((proj / f"metrics/{RECIPE}/ingest.json").read_text())
    assert ingest["rows"] + ingest["rejected"] == 13 * 6  # tiny: 6 models of each of the 13 classes
    ev = json.loads((proj / f"metrics/{RECIPE}/evaluate.json").read_text())
    assert ev["n_classes"] == 13 and ev["n_test"] >= 13  # every class is in the test split
    dom = ev["domain"]
    assert {"pretrained", "random_init", "supervised"} <= set(dom)
    for enc in ("pretrained", "random_init", "supervised"):
        assert 0.0 <= dom[enc]["linear_svm"] <= 1.0 and 0.0 <= dom[enc]["knn"] <= 1.0
        assert dom[enc]["few_shot"]["ways"] == 3 and dom[enc]["few_shot"]["episodes"] == 2
    report = (proj / f"reports/{RECIPE}/report.md").read_text()
    assert "Point-cloud protocol" in report and "3-way 2-shot" in report
    assert (proj / f"models/{RECIPE}/pretrained/encoder.safetensors").exists()
