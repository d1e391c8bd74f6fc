"""Which labelled rows the probes and fine-tuning use (none, some, unseen test classes), the label-free
section, seeds with their spread, and the probes going through their registry with ``knn_k``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stages.common.cli import Dirs
from stages.common.encoders import build_encoder, save_encoder
from stages.common.labelled import NoLabels, labelled_from_rows
from stages.common.rows import rows_to_table
from stages.common.schema import DataCfg, EvaluateCfg, FinetuneCfg, Recipe
from stages.common.storage import join, write_json, write_table
from stages.evaluate import probes
from stages.evaluate.__main__ import _domain_rows
from stages.evaluate.__main__ import run as evaluate
from stages.evaluate.probes import evaluate_probes
from stages.evaluate.representation import diagnostics
from stages.finetune.__main__ import run as finetune

TINY_ENCODER = {"in_channels": 1, "hidden_dim": 8, "out_dim": 16, "depth": 2}


def _rows(n: int = 40, label=lambda i: "ab"[i % 2], split=lambda i: None) -> list[dict]:  # noqa: ANN001
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 32, dtype=np.float32)
    return [
        {
            "id": str(i),
            "x": (np.sin(2 * np.pi * (1 + 3 * (i % 2)) * t) + 0.1 * rng.normal(size=32)).astype(np.float32)[
                None
            ],
            "label": label(i),
            "split": split(i),
            "group": f"g{i // 2}",
            "meta": {},
        }
        for i in range(n)
    ]


def _workspace(tmp_path: Path, rows: list[dict], **evaluate_cfg) -> tuple[Recipe, Dirs]:  # noqa: ANN003
    torch.set_num_threads(1)
    recipe = Recipe(
        name="labels",
        domain="timeseries",
        data=DataCfg(source="none"),
        encoder=TINY_ENCODER,
        finetune=FinetuneCfg(fractions=[1.0], modes=["linear"], epochs=3),
        evaluate=EvaluateCfg(probes=["linear", "knn"], embedding_map_points=20, **evaluate_cfg),
    )
    dirs = Dirs(*(str(tmp_path / d) for d in ("data", "models", "metrics", "runs", "reports")))
    for stage in ("ingested", "curated"):  # curation removed nothing here
        write_table(join(dirs.data, stage, "part-0.parquet"), rows_to_table(rows))
    torch.manual_seed(1)
    enc = build_encoder("timeseries", TINY_ENCODER)
    config = {"domain": "timeseries", "encoder": TINY_ENCODER, "embedding_dim": enc.embedding_dim}
    save_encoder(join(dirs.models, "pretrained"), enc, config)
    return recipe, dirs


# --------------------------------------------------------------------------- the shared loader


def test_no_labels_is_a_reason_not_a_traceback() -> None:
    with pytest.raises(NoLabels, match="none of the 40 curated rows carries a label"):
        labelled_from_rows(_rows(label=lambda i: None))
    with pytest.raises(NoLabels, match="one class"):
        labelled_from_rows(_rows(label=lambda i: "a"))


def test_partly_labelled_rows_get_a_test_split_carved_by_group_and_stratified() -> None:
    rows = _rows(60, label=lambda i: "ab"[i % 2] if i % 4 < 2 else None)  # half the rows labelled
    data = labelled_from_rows(rows)
    assert data.carved and data.n_labelled == 30 and data.n_rows == 60
    assert len(data.train.y) + len(data.test.y) == 30
    assert not set(data.train.groups) & set(data.test.groups)
    assert set(data.test.y) == {0, 1}
    assert "carved from the labelled rows by group" in data.describe()
    again = labelled_from_rows(rows)
    assert again.test.ids == data.test.ids  # finetune and evaluate carve the same split


def test_rows_marked_test_are_the_test_split_and_unseen_classes_are_excluded_and_counted() -> None:
    rows = _rows(40, split=lambda i: "test" if i >= 30 else None)
    rows[35]["label"] = rows[37]["label"] = "c"  # a class no training row has
    data = labelled_from_rows(rows)
    assert not data.carved and len(data.test.y) == 8 and data.classes == ["a", "b"]
    assert data.n_unseen_test == 2 and data.unseen_classes == ["c"]
    assert "2 test rows of classes never seen in training (c) are excluded" in data.describe()
    # every domain's own protocol gets the same rule: the unseen-class test rows are not handed over
    train, test = _domain_rows(rows, data)
    assert {r["id"] for r in test} == {str(i) for i in range(30, 40)} - {"35", "37"} and len(train) == 30


# --------------------------------------------------------------------------- the stages


def test_without_labels_both_stages_skip_with_a_reason_and_write_every_output(tmp_path: Path) -> None:
    recipe, dirs = _workspace(tmp_path, _rows(label=lambda i: None))
    finetune(recipe, dirs)
    assert "no labels" in json.loads((tmp_path / "metrics" / "finetune.json").read_text())["skipped"]
    assert json.loads((tmp_path / "metrics" / "label_efficiency.json").read_text()) == []
    assert (tmp_path / "models" / "finetuned" / "skipped.json").exists()
    evaluate(recipe, dirs)
    metrics = json.loads((tmp_path / "metrics" / "evaluate.json").read_text())
    assert metrics["no_labels"].startswith("no labels:") and "pretrained" not in metrics
    rep = metrics["representation"]
    assert rep["sample"].startswith("training rows") and rep["n_rows"] == 40
    for name in ("pretrained", "random_init"):
        assert rep[name]["alignment"] >= 0.0 and rep[name]["uniformity"] <= 0.0
        assert 1.0 <= rep[name]["rankme"] <= 16.0
    first = rep["retrieval"][0]
    assert len(first["neighbours"]) == 5 and first["query"] not in first["neighbours"]
    assert first["distances"] == sorted(first["distances"])
    report = (tmp_path / "reports" / "report.md").read_text()
    assert "no labels: none of the 40 curated rows carries a label" in report
    assert "Representation without labels" in report and "Nearest neighbours" in report
    for png in ("retrieval.png", "embedding_map.png"):
        assert (tmp_path / "reports" / png).stat().st_size > 1000


def test_probes_and_random_init_are_seeded_per_seed_and_reported_with_spread(tmp_path: Path) -> None:
    rows = _rows(48, split=lambda i: "test" if i >= 32 else None)
    recipe, dirs = _workspace(tmp_path, rows, seeds=[0, 1, 2])
    write_json(
        join(dirs.metrics, "finetune.json"),
        {"random_init": {"full": {"100%": 0.9, "100%_std": 0.05}}, "seeds": [0, 1]},
    )
    write_json(join(dirs.metrics, "label_efficiency.json"), [])
    evaluate(recipe, dirs)
    metrics = json.loads((tmp_path / "metrics" / "evaluate.json").read_text())
    assert metrics["seeds"] == [0, 1, 2]
    rand = metrics["random_init"]
    assert len(rand["linear_seeds"]) == 3 and rand["linear"] == pytest.approx(np.mean(rand["linear_seeds"]))
    assert rand["linear_std"] == pytest.approx(np.std(rand["linear_seeds"]))
    # random init is a seed-dependent baseline: its label-free figures differ between seeds
    assert len(set(metrics["representation"]["random_init"]["rankme_seeds"])) == 3
    report = (tmp_path / "reports" / "report.md").read_text()
    assert "1.000 ± 0.000 (3 seeds)" in report and "0.900 ± 0.050 (2 seeds)" in report


def test_knn_k_is_honoured_and_probes_go_through_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def spy(name):  # noqa: ANN001, ANN202
        real = probes.PROBES[name]

        def fit(x, y, seed=0, **kw):  # noqa: ANN001, ANN003, ANN202
            calls.append((name, seed, kw))
            return real(x, y, seed=seed, **kw)

        return fit

    for name in list(probes.PROBES):
        monkeypatch.setitem(probes.PROBES, name, spy(name))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4))
    y = np.arange(40) % 2
    evaluate_probes(x, y, x, y, ["svm", "linear", "knn"], seed=3, knn_k=7)
    assert calls == [("svm", 3, {}), ("linear", 3, {}), ("knn", 3, {"k": 7})]
    # with k > 1 a training point is no longer its own sole neighbour: accuracy on noise drops below 1
    assert evaluate_probes(x, y, x, y, ["knn"], knn_k=1)["knn"] == 1.0
    assert evaluate_probes(x, y, x, y, ["knn"], knn_k=7)["knn"] < 1.0


def test_rankme_on_a_large_sample_reaches_far_beyond_a_batch() -> None:
    feats = np.random.default_rng(0).normal(size=(1024, 64))
    assert diagnostics(feats, None)["rankme"] > 2 * 16  # a training batch of 16 caps RankMe at 16


def test_label_free_diagnostics_are_the_pretraining_ones() -> None:
    """Evaluate reports the very metrics pretraining logs (one definition in stages/common)."""
    from stages.common import diagnostics as pre

    feats = np.random.default_rng(0).normal(size=(64, 8))
    views = tuple(np.random.default_rng(s).normal(size=(64, 8)) for s in (1, 2))
    out = diagnostics(feats, views)
    z = torch.from_numpy(feats)
    assert out["uniformity"] == pytest.approx(pre.uniformity(z))
    assert out["rankme"] == pytest.approx(pre.effective_rank(z))
    assert out["alignment"] == pytest.approx(pre.alignment(*(torch.from_numpy(v) for v in views)))
