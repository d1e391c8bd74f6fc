"""``evaluate.head_features``: the probes also run on the projection head's output z = g(h), and
both representations reach evaluate.json and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stages.common.cli import Dirs
from stages.common.encoders import build_encoder, embed, load_head, save_encoder, state_to_bytes
from stages.common.heads import build_head
from stages.common.rows import rows_to_table
from stages.common.schema import DataCfg, EvaluateCfg, FinetuneCfg, HeadCfg, Recipe
from stages.common.storage import join, write_json, write_table
from stages.evaluate.__main__ import head_features, run

TINY_ENCODER = {"in_channels": 1, "hidden_dim": 8, "out_dim": 16, "depth": 2}


def _rows() -> list[dict]:
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 32, dtype=np.float32)
    rows = []
    for i in range(48):
        c, split = i % 2, ("test" if i >= 32 else "train")
        x = (np.sin(2 * np.pi * (1 + 3 * c) * t) + 0.1 * rng.normal(size=32)).astype(np.float32)[None]
        rows.append({"id": str(i), "x": x, "label": "ab"[c], "split": split, "group": str(i), "meta": {}})
    return rows


@pytest.fixture
def workspace(tmp_path):  # noqa: ANN001, ANN201
    torch.set_num_threads(1)
    recipe = Recipe(
        name="heads",
        domain="timeseries",
        data=DataCfg(source="none"),
        encoder=TINY_ENCODER,
        finetune=FinetuneCfg(fractions=[1.0]),
        evaluate=EvaluateCfg(probes=["linear", "knn"], embedding_map_points=0, head_features=True),
    )
    dirs = Dirs(*(str(tmp_path / d) for d in ("data", "models", "metrics", "runs", "reports")))
    for stage in ("ingested", "curated"):  # curation removed nothing here
        write_table(join(dirs.data, stage, "part-0.parquet"), rows_to_table(_rows()))
    torch.manual_seed(1)
    enc = build_encoder("timeseries", TINY_ENCODER)
    head_cfg = HeadCfg(hidden_dim=16, out_dim=8)
    head = build_head(enc.embedding_dim, head_cfg)
    with torch.no_grad():  # non-trivial BatchNorm statistics, as after pretraining
        head(torch.randn(64, enc.embedding_dim) * 2 + 1)
    config = {"domain": "timeseries", "encoder": TINY_ENCODER, "embedding_dim": enc.embedding_dim}
    save_encoder(
        join(dirs.models, "pretrained"),
        enc,
        {**config, "head": head_cfg.model_dump()},
        files={"head.safetensors": state_to_bytes(head.eval())},
    )
    write_json(join(dirs.metrics, "finetune.json"), {"random_init": {"full": {"100%": 0.9}}})
    write_json(join(dirs.metrics, "label_efficiency.json"), [])
    return recipe, dirs, tmp_path


def test_head_features_add_rows_to_metrics_and_report(workspace) -> None:  # noqa: ANN001
    recipe, dirs, root = workspace
    run(recipe, dirs)
    metrics = json.loads((root / "metrics" / "evaluate.json").read_text())
    for name in ("pretrained", "pretrained_head", "random_init", "random_init_head"):
        # one seed by default: the mean, its (zero) spread and the per-seed values of each probe
        assert set(metrics[name]) == {f"{p}{s}" for p in ("linear", "knn") for s in ("", "_std", "_seeds")}, (
            name
        )
        assert all(
            0.0 <= metrics[name][p] <= 1.0 and len(metrics[name][f"{p}_seeds"]) == 1
            for p in ("linear", "knn")
        )
    report = (root / "reports" / "report.md").read_text()  # under dirs.reports (paths.reports)
    for name in ("pretrained_head", "random_init_head"):
        assert f"| {name} |" in report


def test_head_features_are_the_heads_output_not_the_encoders(workspace) -> None:  # noqa: ANN001
    recipe, dirs, _ = workspace
    from stages.common.encoders import load_encoder

    pre = join(dirs.models, "pretrained")
    enc, head = load_encoder(pre), load_head(pre)
    xs = [r["x"] for r in _rows()[:10]]
    h = embed(enc, "timeseries", xs)
    z = head_features(head, h)
    assert z.shape == (10, 8) and h.shape == (10, 16)
    with torch.no_grad():
        np.testing.assert_allclose(z, head(torch.from_numpy(h)).numpy(), rtol=1e-5, atol=1e-6)

    # a different geometry, not a rescaled copy of h: centred pairwise cosines differ
    def cos(a: np.ndarray) -> np.ndarray:
        a = a - a.mean(0)
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        return a @ a.T

    assert np.abs(cos(z) - cos(h)).max() > 0.1


def test_head_features_off_by_default_keeps_evaluate_json_unchanged(workspace) -> None:  # noqa: ANN001
    recipe, dirs, root = workspace
    recipe.evaluate.head_features = False
    run(recipe, dirs)
    metrics = json.loads((root / "metrics" / "evaluate.json").read_text())
    assert "pretrained_head" not in metrics and "random_init_head" not in metrics
    assert "pretrained" in metrics and "random_init" in metrics
