"""bench/pretrain_stages.py: a recipe's pretrain stage timed under Ray Train and in one process, with
the same rows, global batch and cores, its outputs kept out of the project."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import pretrain_stages
from stages.common.config import load_recipe
from stages.pretrain.__main__ import read_train_rows

RECIPE = "rl-cartpole"  # its tiny run is shared with tests/domains/rl/test_e2e.py


def _files(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in root.rglob("*") if p.is_file()}


def test_in_process_config_keeps_the_global_batch_and_the_cores(run_tiny, tmp_path: Path) -> None:  # noqa: ANN001
    run = run_tiny(RECIPE)
    recipe = load_recipe(
        run.proj / "pipelines" / f"{RECIPE}.yaml", str(run.proj / "params.yaml"), ["scale=tiny"]
    )
    dirs = pretrain_stages.stage_dirs(recipe, run.proj / "data", tmp_path)
    _, rows = read_train_rows(dirs)
    config = pretrain_stages.in_process_config(recipe, dirs, rows)
    assert config["world_size"] == 1 and config["local_batch"] == recipe.pretrain.batch_size
    assert config["steps_per_epoch"] == len(rows) // recipe.pretrain.batch_size
    assert (
        config["pretrain"]["threads_per_worker"]
        == recipe.ray.num_workers * recipe.pretrain.threads_per_worker
    )
    assert len(config["diagnostic_sample"]) == min(len(rows), recipe.pretrain.diagnostic_rows)
    assert config["live_dir"].startswith(str(tmp_path))  # the stage's live metrics, not the project's


def test_times_both_arms_and_writes_outside_the_project(
    run_tiny,  # noqa: ANN001
    ray_session,  # noqa: ANN001
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BENCH_FORCE", "1")  # the suite itself loads the machine
    run = run_tiny(RECIPE)
    before = _files(run.proj)
    out = tmp_path / "stages.json"
    argv = ["--recipes", RECIPE, "--data", str(run.proj / "data"), "--params", str(run.proj / "params.yaml")]
    pretrain_stages.main([*argv, "--set", "scale=tiny", "--out", str(out)])
    res = json.loads(out.read_text())
    row = res["recipes"][0]
    assert row["recipe"] == RECIPE and row["in_process"]["epochs"] == row["ray_train"]["epochs"] == 2
    assert row["wall_ratio"] == pytest.approx(row["ray_train"]["wall_s"] / row["in_process"]["wall_s"])
    assert row["ray_added_s"] == pytest.approx(row["ray_train"]["wall_s"] - row["in_process"]["wall_s"])
    assert res["all"]["wall_ratio"] == pytest.approx(row["wall_ratio"])
    assert f"| {RECIPE} | 2 x 1 |" in out.with_suffix(".md").read_text()
    assert _files(run.proj) == before  # models, metrics and runs went to a temporary directory


def test_refuses_without_make_repros_data(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="make repro"):
        pretrain_stages.measure(RECIPE, tmp_path, 1, Path(pretrain_stages.REPO / "params.yaml"))
