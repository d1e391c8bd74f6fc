"""Fine-tuning learns from few labels, and the saved linear model works on raw encoder output."""

from __future__ import annotations

import numpy as np
import torch

from stages.common.encoders import build_encoder
from stages.common.labelled import Labelled, Split
from stages.common.schema import FinetuneCfg
from stages.finetune.__main__ import finetune_one, summarise


def _data() -> Labelled:
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 40, dtype=np.float32)

    def make(n: int) -> Split:
        y = np.arange(n) % 2
        xs = [
            (np.sin(2 * np.pi * (1 + 3 * c) * t) + 0.1 * rng.normal(size=40)).astype(np.float32)[None]
            for c in y
        ]
        return Split(xs, y.astype(np.int64), np.array([str(i) for i in range(n)]))

    return Labelled(make(40), make(40), ["a", "b"])


def test_linear_and_full_modes_learn_and_saved_linear_head_matches() -> None:
    data = _data()
    cfg = FinetuneCfg(epochs=30, batch_size=8, lr=3e-3, patience=30)
    train_idx, val_idx = np.arange(30), np.arange(30, 40)
    torch.manual_seed(0)
    for mode in ("linear", "full"):
        enc = build_encoder("timeseries", {"in_channels": 1, "hidden_dim": 8, "out_dim": 16, "depth": 2})
        model, acc, _ = finetune_one("timeseries", enc, data, train_idx, val_idx, mode, cfg, seed=0)
        assert acc >= 0.9, (mode, acc)
        if mode == "linear":
            from domains import get_domain

            model.eval()
            with torch.no_grad():
                pred = model(get_domain("timeseries").collate(data.test.xs)).argmax(1).numpy()
            assert (pred == data.test.y).mean() == acc


def test_summarise_shape() -> None:
    rows = [
        {"init": "pretrained", "mode": "linear", "fraction": 0.1, "test_accuracy": 0.5},
        {"init": "pretrained", "mode": "linear", "fraction": 0.1, "test_accuracy": 0.7},
    ]
    assert summarise(rows) == {"pretrained": {"linear": {"10%": 0.6}}}
