"""Materialised views (views.materialize): the bank the views stage writes, and pretraining on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from domains import get_domain
from stages.common.bank import bank_batch, decode_bank, draw_views
from stages.common.config import ConfigError, load_recipe
from stages.common.losses import build_loss
from stages.common.rows import rows_to_table
from stages.common.schema import PretrainCfg, ViewsCfg
from stages.common.storage import read_table
from stages.pretrain.loop import build_model, check_views, run_in_process
from stages.pretrain.shards import list_batches
from tests.conftest import BIN, copy_project

REPO = Path(__file__).resolve().parents[3]
B, K = 8, 4
POLICY = {"name": "default", "params": {}}


def _data(n: int = 24) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 60, dtype=np.float32)
    return [
        np.sin(2 * np.pi * (1 + i % 4) * t + rng.uniform(0, 6))[None].astype(np.float32) for i in range(n)
    ]


def _banks(table, k: int = K) -> dict[str, list[np.ndarray]]:  # noqa: ANN001
    out = bank_batch(table, "timeseries", POLICY, k, seed=7).to_pylist()
    return {r["id"]: decode_bank(r["views"], r["shapes"]) for r in out}


def test_a_rows_bank_depends_on_its_id_and_seed_not_on_batching() -> None:
    table = rows_to_table([{"id": f"r{i}", "x": x, "split": "train"} for i, x in enumerate(_data())])
    whole = _banks(table)
    halves = {**_banks(table.slice(0, 10)), **_banks(table.slice(10))}
    assert whole.keys() == halves.keys()
    for rid, views in whole.items():
        assert len(views) == K
        assert all(np.array_equal(a, b) for a, b in zip(views, halves[rid], strict=True))
        # K distinct augmentations of the row, each a valid series (crops may shorten it)
        assert not np.array_equal(views[0], views[1])
        assert all(v.ndim == 2 and v.shape[0] == 1 and np.isfinite(v).all() for v in views)


def test_draw_views_takes_distinct_views_of_each_row() -> None:
    banks = [[np.full((1, 5), 10 * i + j, np.float32) for j in range(K)] for i in range(6)]
    views = draw_views(banks, 3, np.random.default_rng(0))
    assert len(views) == 3 and all(len(v) == 6 for v in views)
    for i in range(6):
        drawn = [int(views[j][i][0, 0]) for j in range(3)]
        assert len(set(drawn)) == 3 and all(d // 10 == i for d in drawn)


def _config(**views: object) -> dict:
    pre = PretrainCfg(
        epochs=1, batch_size=B, lr=3e-3, temperature=0.2, head={"hidden_dim": 32, "out_dim": 16}
    )
    encoder = {"in_channels": 1, "hidden_dim": 16, "out_dim": 32, "depth": 2, "mask_p": 0.0, "dropout": 0.0}
    return {
        "domain": "timeseries",
        "encoder": encoder,
        "pretrain": pre.model_dump(),
        "policy": POLICY,
        "views": views,
        "local_batch": B,
        "steps_per_epoch": 1,
    }


def test_loop_trains_on_views_drawn_from_the_bank() -> None:
    """The loop's step-0 loss is NT-Xent on the views draw_views picks from each row's bank."""
    config = _config(materialize=K)
    table = rows_to_table([{"id": f"r{i}", "x": x, "split": "train"} for i, x in enumerate(_data())])
    banks = list(_banks(table).values())
    _, history = run_in_process(config, banks)

    model = build_model(config)
    model.train()
    batch = next(list_batches(banks, B, 0, config["pretrain"]["seed"]))
    v1, v2 = draw_views(batch, 2, np.random.default_rng([config["pretrain"]["seed"], 0, 0]))
    with torch.no_grad():
        _, z = model(get_domain("timeseries").collate(v1 + v2))
    reference = float(build_loss("ntxent", 0.2)(*z.split(B)))
    assert history[0]["loss"] == pytest.approx(reference, rel=1e-5)


def test_domain_objectives_refuse_a_bank() -> None:
    with pytest.raises(ValueError, match="views.materialize=4: the domain objective 'ts2vec'"):
        check_views(get_domain("timeseries"), "ts2vec", None, ViewsCfg(materialize=4), None)


@pytest.mark.parametrize(
    "sets",
    [
        ["views.materialize=1"],
        ["views.materialize=4", "views.n_views=6"],
        ["views.small_crops=2", "views.materialize=4"],
    ],
)
def test_a_bank_too_small_or_with_small_crops_is_a_one_line_error(sets: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_recipe(
            REPO / "pipelines/timeseries-gunpoint.yaml", REPO / "params.yaml", ["pretrain.loss=ntxent", *sets]
        )
    assert ": views.materialize:" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.e2e
def test_views_stage_materialises_train_rows_and_pretraining_uses_them(
    tmp_path: Path, ray_address: str
) -> None:
    proj = copy_project(tmp_path)
    env = {**os.environ, "RAY_ADDRESS": ray_address, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    recipe = "pipelines/timeseries-gunpoint.yaml"
    cmd = [
        sys.executable,
        "-m",
        "pipelines.run",
        recipe,
        "--set",
        "scale=tiny",
        "--set",
        "views.materialize=3",
        "--set",
        "pretrain.loss=ntxent",  # the recipe's ts2vec makes its own crops: a bank needs a view-pair loss
    ]
    proc = subprocess.run(
        [*cmd, "--stages", "ingest,curate,views,pretrain"],
        cwd=proj,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    data = proj / "data/timeseries-gunpoint"
    plan = json.loads((data / "views/plan.json").read_text())
    assert plan["mode"] == "materialized" and plan["bank_size"] == 3
    bank = pq.read_table(data / "views/bank").to_pylist()
    curated = read_table(str(data / "curated")).select(["id", "split"]).to_pylist()
    train = {r["id"] for r in curated if r["split"] != "test"}
    assert {r["id"] for r in bank} == train  # every training row, and no test row
    assert plan["bank"]["rows"] == len(train) and all(len(r["views"]) == 3 for r in bank)
    assert "views: materialised" in proc.stdout
    pre = json.loads((proj / "metrics/timeseries-gunpoint/pretrain.json").read_text())
    assert np.isfinite(pre["final_loss"])
