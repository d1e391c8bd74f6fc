"""bench/rl_agent.py: one agent per input and seed, the pretrained encoder of seed s read from the
``{seed}`` path, a random-init encoder of the same architecture, and the goal ratio."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench import rl_agent
from stages.common.encoders import build_encoder, save_encoder

ENCODER = {"name": "pixel_cnn", "num_layers": 2, "num_filters": 8, "feature_dim": 16, "image_size": 64}


def _save(root: Path, seed: int) -> None:
    torch.manual_seed(100 + seed)
    enc = build_encoder("rl", ENCODER)
    save_encoder(str(root / f"seed{seed}"), enc, {"domain": "rl", "embedding_dim": 16, "encoder": ENCODER})


def test_random_init_is_the_same_architecture_not_the_pretrained_weights(tmp_path: Path) -> None:
    _save(tmp_path, 0)
    models = str(tmp_path / "seed{seed}")
    pre = rl_agent.encoder_for("pretrained", models, 0)
    rand = rl_agent.encoder_for("random_init", models, 0)
    assert pre is not None and rand is not None
    assert [p.shape for p in pre.parameters()] == [p.shape for p in rand.parameters()]
    assert not torch.equal(next(pre.parameters()), next(rand.parameters()))
    again = rl_agent.encoder_for("random_init", models, 0)
    assert torch.equal(next(rand.parameters()), next(again.parameters()))  # seeded
    assert rl_agent.encoder_for("state", models, 0) is None


def test_writes_per_seed_returns_and_the_goal(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("BENCH_FORCE", "1")  # the suite may be running beside it
    for s in (0, 1):
        _save(tmp_path, s)
    out = tmp_path / "agent.json"
    rl_agent.main(
        [
            "--models",
            str(tmp_path / "seed{seed}"),
            "--inputs",
            "pretrained,random_init,state",
            "--seeds",
            "0,1",
            "--steps",
            "64",
            "--algo-kwargs",
            '{"n_steps": 64, "batch_size": 32, "n_epochs": 1}',
            "--eval-episodes",
            "1",
            "--out",
            str(out),
        ]
    )
    res = json.loads(out.read_text())
    for k in ("pretrained", "random_init", "state"):
        assert list(res[k]["seeds"]) == ["0", "1"]
        assert all(v > 0 for v in res[k]["seeds"].values())
        assert len(res[k]["runs"]) == 2
    ratio = res["pretrained"]["mean"] / res["state"]["mean"]
    assert res["goal"]["pretrained_over_state"] == round(ratio, 3)
    assert res["goal"]["met"] == (ratio >= rl_agent.GOAL)
    assert {"load_average_start", "load_average_end"} <= set(res["meta"])
    md = out.with_suffix(".md").read_text()
    assert "| random_init |" in md and "Goal (issue 17)" in md


def test_a_missing_encoder_is_a_one_line_error(tmp_path: Path) -> None:
    _save(tmp_path, 0)
    with pytest.raises(SystemExit, match=r"--models: no pretrained encoder at .*seed1"):
        rl_agent.main(["--models", str(tmp_path / "seed{seed}"), "--seeds", "0,1"])
