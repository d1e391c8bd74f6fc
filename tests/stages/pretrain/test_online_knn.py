"""The online kNN diagnostic: protocol, the labelled set it uses, and its place in the history."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stages.common.diagnostics import knn_accuracy
from stages.common.schema import PretrainCfg
from stages.pretrain.__main__ import online_knn_set
from stages.pretrain.loop import run_in_process


def test_knn_accuracy_on_separated_clusters() -> None:
    gen = torch.Generator().manual_seed(0)
    centres = torch.eye(4)[:2] * 10
    bank = torch.cat(
        [centres[0] + torch.randn(20, 4, generator=gen), centres[1] + torch.randn(20, 4, generator=gen)]
    )
    queries = torch.cat(
        [centres[0] + torch.randn(5, 4, generator=gen), centres[1] + torch.randn(5, 4, generator=gen)]
    )
    labels, qlabels = ["a"] * 20 + ["b"] * 20, ["a"] * 5 + ["b"] * 5
    assert knn_accuracy(bank, labels, queries, qlabels) == 1.0
    assert knn_accuracy(bank, labels, queries, qlabels[::-1]) == 0.0
    # k is capped at the bank size
    assert knn_accuracy(bank[18:22], labels[18:22], queries, qlabels, k=20) == 1.0


def _rows(n: int, labelled: bool = True) -> list[dict]:
    return [
        {
            "id": f"r{i}",
            "x": np.full((1, 10), i, np.float32),
            "label": str(i % 2) if labelled else None,
            "split": "test" if i % 5 == 0 else "train",
            "group": f"g{i // 3}",
        }
        for i in range(n)
    ]


def test_online_knn_set_splits_by_group_and_never_uses_test_rows() -> None:
    knn = online_knn_set(_rows(120), n=40, seed=0)
    assert knn is not None
    ids = {int(x[0, 0]) for x in knn["bank_x"] + knn["query_x"]}
    assert len(ids) == 40 and not any(i % 5 == 0 for i in ids)
    bank_groups = {int(x[0, 0]) // 3 for x in knn["bank_x"]}
    query_groups = {int(x[0, 0]) // 3 for x in knn["query_x"]}
    assert bank_groups and query_groups and not bank_groups & query_groups
    assert online_knn_set(_rows(120, labelled=False), n=40, seed=0) is None
    assert online_knn_set(_rows(120), n=0, seed=0) is None


def _series(kind: int, rng: np.random.Generator) -> np.ndarray:
    t = np.linspace(0, 1, 50, dtype=np.float32)
    x = np.sin(2 * np.pi * 2 * t + rng.uniform(0, 6)) if kind else np.sign(np.sin(2 * np.pi * 9 * t))
    return (x + rng.normal(0, 0.05, 50))[None].astype(np.float32)


def test_online_knn_is_logged_at_checkpoint_epochs_above_chance() -> None:
    rng = np.random.default_rng(0)
    knn = {
        "bank_x": [_series(i % 2, rng) for i in range(40)],
        "bank_y": [str(i % 2) for i in range(40)],
        "query_x": [_series(i % 2, rng) for i in range(40)],
        "query_y": [str(i % 2) for i in range(40)],
    }
    pre = PretrainCfg(epochs=3, batch_size=8, checkpoint_every=2, head={"hidden_dim": 16, "out_dim": 8})
    config = {
        "domain": "timeseries",
        "encoder": {"in_channels": 1, "hidden_dim": 8, "out_dim": 16, "depth": 2},
        "pretrain": pre.model_dump(),
        "policy": {"name": "default", "params": {}},
        "local_batch": 8,
        "steps_per_epoch": 2,
        "online_knn": knn,
    }
    model, history = run_in_process(config, [_series(i % 2, rng) for i in range(16)])
    assert ["online_knn" in h for h in history] == [False, True, True]  # epochs 2 and 3 (the last)
    assert history[-1]["online_knn"] > 0.75  # two balanced classes: chance is 0.5
    assert model.encoder.training  # the diagnostic leaves the training mode as it found it
    # without labelled rows the diagnostic is skipped silently
    _, plain = run_in_process({**config, "online_knn": None}, [_series(i % 2, rng) for i in range(16)])
    assert not any("online_knn" in h for h in plain)


@pytest.mark.parametrize("n", [1, 3])
def test_online_knn_set_too_small_is_skipped(n: int) -> None:
    assert online_knn_set(_rows(n * 5 + 1)[:n], n=10, seed=0) is None
