"""The medical recipe end to end at the `tiny` scale on the shared Ray instance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import BIN, copy_project, missing_dvc_outputs

pytestmark = pytest.mark.e2e
RECIPE = "medical-brainpatches"


def test_tiny_recipe_probes_dice_and_spatial_hold_out(tmp_path: Path, ray_address: str) -> None:
    proj = copy_project(tmp_path)
    env = {**os.environ, "RAY_ADDRESS": ray_address, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.run", f"pipelines/{RECIPE}.yaml", "--set", "scale=tiny"],
        cwd=proj,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    # every output dvc.yaml declares for the recipe, or `dvc repro` would fail where this passes
    assert not missing_dvc_outputs(proj, RECIPE)
    ev = json.loads((proj / f"metrics/{RECIPE}/evaluate.json").read_text())
    for enc in ("pretrained", "random_init"):
        assert 0.0 <= ev[enc]["linear"] <= 1.0 and 0.0 <= ev[enc]["knn"] <= 1.0
    assert ev["n_classes"] == 7  # every lobe present in train and test
    dice = ev["domain"]["dice"]
    assert set(dice) == {"pretrained", "random_init"} and all(
        0.0 <= v <= 1.0 for v in dice["pretrained"].values()
    )
    assert "Segmentation Dice" in (proj / f"reports/{RECIPE}/report.md").read_text()
    assert json.loads((proj / f"metrics/{RECIPE}/ingest.json").read_text())["rejected"] == 0

    # No training patch overlaps a test patch of the same brain (spatial hold-out survives curation).
    from stages.common.storage import read_table

    rows = read_table(str(proj / f"data/{RECIPE}/curated")).select(["split", "group", "meta"]).to_pylist()
    boxes: dict[tuple[str, str], list[np.ndarray]] = {}
    for r in rows:
        m = json.loads(r["meta"])
        boxes.setdefault((m["volume"], r["split"]), []).append(np.array(m["centre"]) - m["patch"] // 2)
    p = json.loads(rows[0]["meta"])["patch"]
    for volume in ("mni152", "colin27"):
        train, test = np.array(boxes[(volume, "train")]), np.array(boxes[(volume, "test")])
        gap = np.abs(train[:, None, :] - test[None, :, :]).max(-1)  # Chebyshev distance of corners
        assert gap.min() >= p, f"{volume}: a training patch overlaps a test patch"
    assert not {r["group"] for r in rows if r["split"] == "test"} & {
        r["group"] for r in rows if r["split"] != "test"
    }
