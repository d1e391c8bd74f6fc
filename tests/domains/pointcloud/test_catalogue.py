"""pipelines/pointcloud-catalogue.yaml: every Sweet Home 3D model reaches pretraining, while the
13-class probe keeps the demo's split, so its test models are the demo's and never pretrained on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from domains.pointcloud.readers import SH3D_DIR
from stages.common.config import list_source_units, load_recipe
from tests.conftest import requires_data

pytestmark = requires_data(
    os.path.isdir(SH3D_DIR), reason="Sweet Home 3D models missing: make system-deps (sweethome3d-furniture)"
)
REPO = Path(__file__).resolve().parents[3]


def _models(recipe: str, scale: str) -> dict[str, dict]:
    r = load_recipe(REPO / "pipelines" / f"{recipe}.yaml", REPO / "params.yaml", [f"scale={scale}"])
    return {m["id"]: m for unit in list_source_units(r) for m in unit["models"]}


@pytest.mark.parametrize("scale", ["demo", "tiny"])
def test_catalogue_adds_unlabelled_training_models_and_keeps_the_demo_split(scale: str) -> None:
    cat, demo = _models("pointcloud-catalogue", scale), _models("pointcloud-sweethome3d", scale)
    unlabelled = [m for m in cat.values() if m["label"] is None]
    # the catalogue's other models are there, as training rows only (never scored, never test)
    assert unlabelled and all(m["split"] == "train" for m in unlabelled)
    # every labelled model of the demo, on the same side of the split: the same test models
    labelled = {i: m["split"] for i, m in cat.items() if m["label"] is not None}
    assert labelled == {i: m["split"] for i, m in demo.items()}
    if scale == "tiny":  # max_per_class caps the unlabelled "class" too: a small, fast run
        assert len(unlabelled) == 6
    else:  # the whole catalogue: ~920 models, about half of them outside the 13 classes
        assert len(cat) >= 900 and len(unlabelled) >= 400
