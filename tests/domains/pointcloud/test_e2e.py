"""The pointcloud-sweethome3d recipe end to end at the `tiny` scale, on the shared Ray instance."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from domains.pointcloud.readers import SH3D_DIR
from tests.conftest import requires_data
from tests.e2e import TinyRun

pytestmark = [
    pytest.mark.e2e,
    requires_data(
        os.path.isdir(SH3D_DIR),
        reason="Sweet Home 3D models missing: make system-deps (sweethome3d-furniture)",
    ),
]
RECIPE = "pointcloud-sweethome3d"


def test_tiny_recipe_samples_pretrains_and_reports_the_modelnet_protocol(
    run_tiny: Callable[..., TinyRun],
) -> None:
    run = run_tiny(RECIPE, timeout=1500)  # minutes on an idle 2-core machine; generous for a loaded one
    ingest = run.metrics("ingest")
    assert ingest["rows"] + ingest["rejected"] == 13 * 6  # tiny: 6 models of each of the 13 classes
    ev = run.evaluation
    assert ev["n_classes"] == 13 and ev["n_test"] >= 13  # every class is in the test split
    dom = ev["domain"]
    assert {"pretrained", "random_init", "supervised"} <= set(dom)
    for enc in ("pretrained", "random_init", "supervised"):
        assert 0.0 <= dom[enc]["linear_svm"] <= 1.0 and 0.0 <= dom[enc]["knn"] <= 1.0
        assert dom[enc]["few_shot"]["ways"] == 3 and dom[enc]["few_shot"]["episodes"] == 2
    assert "Point-cloud protocol" in run.report and "3-way 2-shot" in run.report
    assert run.path("models/{name}/pretrained/encoder.safetensors").exists()
