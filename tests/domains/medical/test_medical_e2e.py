"""The medical recipe end to end at the `tiny` scale on the shared Ray instance."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest

from domains.base import is_test
from tests.e2e import TinyRun

pytestmark = pytest.mark.e2e
RECIPE = "medical-brainpatches"


def test_tiny_recipe_probes_dice_and_spatial_hold_out(run_tiny: Callable[..., TinyRun]) -> None:
    run = run_tiny(RECIPE)
    ev = run.evaluation
    for enc in ("pretrained", "random_init"):
        assert 0.0 <= ev[enc]["linear"] <= 1.0 and 0.0 <= ev[enc]["knn"] <= 1.0
    assert ev["n_classes"] == 7  # every lobe present in train and test
    dice = ev["domain"]["dice"]
    assert set(dice) == {"pretrained", "random_init", "intensity"} and all(
        0.0 <= v <= 1.0 for arm in dice.values() for v in arm.values()
    )
    assert (
        "Segmentation Dice" in run.report and "batch-norm decoder" in run.report
    )  # the protocol says its decoder
    assert run.metrics("ingest")["rejected"] == 0

    # No training patch overlaps a test patch of the same brain (spatial hold-out survives curation).
    from stages.common.storage import read_table

    rows = read_table(str(run.path("data/{name}/curated"))).select(["split", "group", "meta"]).to_pylist()
    boxes: dict[tuple[str, bool], list[np.ndarray]] = {}
    for r in rows:
        m = json.loads(r["meta"])
        boxes.setdefault((m["volume"], is_test(r)), []).append(np.array(m["centre"]) - m["patch"] // 2)
    p = json.loads(rows[0]["meta"])["patch"]
    for volume in ("mni152", "colin27"):
        train, test = np.array(boxes[(volume, False)]), np.array(boxes[(volume, True)])
        gap = np.abs(train[:, None, :] - test[None, :, :]).max(-1)  # Chebyshev distance of corners
        assert gap.min() >= p, f"{volume}: a training patch overlaps a test patch"
    assert not {r["group"] for r in rows if is_test(r)} & {r["group"] for r in rows if not is_test(r)}


def test_fine_tunes_and_dice_runs_as_ray_tasks_from_the_dvc_stage_commands(
    run_tiny: Callable[..., TinyRun], ray_address: str, tmp_path
) -> None:  # noqa: ANN001
    """``python -m stages.finetune`` / ``stages.evaluate`` (as DVC runs them, the stage in ``__main__``)
    with ``finetune.ray_tasks=true`` send the fine-tunes and the Dice runs to the session's Ray and
    write the runs the in-process stages wrote."""
    import shutil
    import subprocess
    import sys

    from tests.e2e import tiny_env

    run = run_tiny(RECIPE)
    models = tmp_path / "models" / RECIPE
    shutil.copytree(run.path("models/{name}/pretrained"), models / "pretrained")
    sets = ["scale=tiny", "finetune.ray_tasks=true", f"paths.models={tmp_path / 'models'}"]
    sets += [f"paths.metrics={tmp_path / 'metrics'}", f"paths.reports={tmp_path / 'reports'}"]
    for stage in ("finetune", "evaluate"):
        cmd = [sys.executable, "-m", f"stages.{stage}", "--recipe", f"pipelines/{RECIPE}.yaml"]
        for s in sets:
            cmd += ["--set", s]
        proc = subprocess.run(
            cmd, cwd=run.proj, env=tiny_env(ray_address), capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        if stage == "finetune":
            assert "as Ray tasks of one CPU each" in proc.stdout
        else:
            assert "the domain protocol's runs go to Ray tasks" in proc.stdout
    ft = json.loads((tmp_path / "metrics" / RECIPE / "finetune.json").read_text())
    assert [(r["init"], r["mode"], r["fraction"]) for r in ft["runs"]] == [
        (r["init"], r["mode"], r["fraction"]) for r in run.metrics("finetune")["runs"]
    ]
    assert (models / "finetuned" / "pretrained-full" / "encoder.safetensors").is_file()
    dice = json.loads((tmp_path / "metrics" / RECIPE / "evaluate.json").read_text())["domain"]["dice_runs"]
    mine = run.evaluation["domain"]["dice_runs"]
    assert [(d["init"], d["budget"], d["seed"]) for d in dice] == [
        (d["init"], d["budget"], d["seed"]) for d in mine
    ]
