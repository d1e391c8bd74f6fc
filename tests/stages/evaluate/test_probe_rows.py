"""``evaluate.probe_rows``: a data set with a published split is probed and fine-tuned on its
published training split whatever curation removed from the pretraining pool, and the outputs say
how many training rows curation removed; test rows are never touched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stages.common.cli import Dirs, StageError
from stages.common.encoders import build_encoder, save_encoder
from stages.common.labelled import label_rows, load_labelled
from stages.common.rows import rows_to_table
from stages.common.schema import CurateCfg, DataCfg, EvaluateCfg, FinetuneCfg, Recipe
from stages.common.storage import join, write_table
from stages.curate.__main__ import run as curate
from stages.evaluate.__main__ import run as evaluate
from stages.finetune.__main__ import run as finetune

TINY_ENCODER = {"in_channels": 1, "hidden_dim": 8, "out_dim": 16, "depth": 2}
N_TRAIN, N_TEST = 24, 12


def _rows() -> list[dict]:
    """24 training rows (row 1 an exact copy of row 0, which exact dedup removes) and 12 test rows."""
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 32, dtype=np.float32)
    rows = []
    for i in range(N_TRAIN + N_TEST):
        c = i % 2
        x = (np.sin(2 * np.pi * (1 + 3 * c) * t) + 0.3 * rng.normal(size=32)).astype(np.float32)[None]
        split = "test" if i >= N_TRAIN else "train"
        rows.append({"id": f"r{i:02d}", "x": x, "label": "ab"[c], "split": split, "group": f"r{i:02d}"})
    rows[1]["x"], rows[1]["label"] = rows[0]["x"].copy(), rows[0]["label"]
    return rows


def _workspace(tmp_path: Path, probe_rows: str = "auto") -> tuple[Recipe, Dirs]:
    torch.set_num_threads(1)
    recipe = Recipe(
        name="published",
        domain="timeseries",
        data=DataCfg(source="none"),
        encoder=TINY_ENCODER,
        # exact dedup only: the one rule this test needs to remove a training row
        curate=CurateCfg(quality_filter=False, near_dedup={"enabled": False}),
        finetune=FinetuneCfg(fractions=[1.0], modes=["linear"], epochs=2),
        evaluate=EvaluateCfg(probes=["linear", "knn"], embedding_map_points=0, probe_rows=probe_rows),
    )
    dirs = Dirs(*(str(tmp_path / d) for d in ("data", "models", "metrics", "runs", "reports")))
    write_table(join(dirs.data, "ingested", "part-00000.parquet"), rows_to_table(_rows()))
    curate(recipe, dirs)
    torch.manual_seed(1)
    enc = build_encoder("timeseries", TINY_ENCODER)
    config = {"domain": "timeseries", "encoder": TINY_ENCODER, "embedding_dim": enc.embedding_dim}
    save_encoder(join(dirs.models, "pretrained"), enc, config)
    return recipe, dirs


def test_probes_and_fine_tunes_fit_on_every_published_training_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe, dirs = _workspace(tmp_path)
    curated = json.loads((tmp_path / "metrics" / "curate.json").read_text())
    assert curated["train_rows_in"] == N_TRAIN and curated["train_rows_out"] == N_TRAIN - 1  # the copy

    finetune(recipe, dirs)
    ft = json.loads((tmp_path / "metrics" / "finetune.json").read_text())
    assert {r["n_fit"] + r["n_val"] for r in ft["runs"]} == {N_TRAIN}  # the 100 % run saw every label
    assert ft["probe_rows"]["mode"] == "published"
    # progress as plain lines (no carriage returns) when not on a terminal, as in a DVC log
    err = capsys.readouterr().err
    assert "finetune: runs 2/2 (100%)" in err and "\r" not in err

    evaluate(recipe, dirs)
    metrics = json.loads((tmp_path / "metrics" / "evaluate.json").read_text())
    assert metrics["n_train"] == N_TRAIN and metrics["n_test"] == N_TEST
    assert metrics["probe_rows"] == {
        "mode": "published",
        "requested": "auto",
        "train_rows_ingested": N_TRAIN,
        "train_rows_curated": N_TRAIN - 1,
        "train_rows_removed_by_curation": 1,
    }
    assert "evaluate: probes (linear, knn) per seed 1/1 (100%)" in capsys.readouterr().err
    report = (tmp_path / "reports" / "report.md").read_text()
    assert (
        f"probes and fine-tuning fit on the published training split: all {N_TRAIN} training rows "
        "ingest kept; curation removed 1 of them from the pretraining pool only"
    ) in report


def test_curated_mode_fits_on_the_curated_rows_and_still_counts_what_curation_removed(
    tmp_path: Path,
) -> None:
    recipe, dirs = _workspace(tmp_path, probe_rows="curated")
    data = load_labelled(dirs.data, "curated")
    assert len(data.train.y) == N_TRAIN - 1 and len(data.test.y) == N_TEST
    assert data.source is not None and data.source.train_rows_removed_by_curation == 1
    finetune(recipe, dirs)
    ft = json.loads((tmp_path / "metrics" / "finetune.json").read_text())
    assert {r["n_fit"] + r["n_val"] for r in ft["runs"]} == {N_TRAIN - 1}
    evaluate(recipe, dirs)
    metrics = json.loads((tmp_path / "metrics" / "evaluate.json").read_text())
    assert metrics["n_train"] == N_TRAIN - 1 and metrics["probe_rows"]["mode"] == "curated"


def test_test_rows_are_the_curated_ones_in_either_mode(tmp_path: Path) -> None:
    _, dirs = _workspace(tmp_path)
    tests = {m: load_labelled(dirs.data, m).test.ids for m in ("published", "curated")}
    assert tests["published"] == tests["curated"] == [f"r{i:02d}" for i in range(N_TRAIN, N_TRAIN + N_TEST)]


def test_without_a_published_split_auto_is_curated_and_published_is_refused(tmp_path: Path) -> None:
    dirs = Dirs(*(str(tmp_path / d) for d in ("data", "models", "metrics", "runs", "reports")))
    rows = [{**r, "split": None} for r in _rows()]
    write_table(join(dirs.data, "curated", "part-0.parquet"), rows_to_table(rows))
    _, source = label_rows(dirs.data, "auto")
    assert source.mode == "curated"
    with pytest.raises(StageError, match="evaluate.probe_rows=published: no row is marked test"):
        label_rows(dirs.data, "published")
