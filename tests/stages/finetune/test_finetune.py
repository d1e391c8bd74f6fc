"""Fine-tuning learns from few labels, and the saved linear model works on raw encoder output."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from stages.common.encoders import build_encoder
from stages.common.labelled import Labelled, Split
from stages.common.schema import FinetuneCfg
from stages.common.splits import stratified_fraction
from stages.finetune.__main__ import finetune_one, label_budget, summarise


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


def test_summarise_gives_mean_std_and_per_seed_values_and_keeps_each_runs_label_counts() -> None:
    rows = [
        {
            "init": "pretrained",
            "mode": "linear",
            "fraction": 0.1,
            "seed": s,
            "test_accuracy": a,
            "n_fit": 8,
            "n_val": 2,
        }
        for s, a in ((0, 0.5), (1, 0.7))
    ]
    out = summarise(rows)
    cell = out["pretrained"]["linear"]
    assert cell["10%"] == pytest.approx(0.6) and cell["10%_std"] == pytest.approx(0.1)
    assert cell["10%_seeds"] == [0.5, 0.7]
    assert out["seeds"] == [0, 1]
    assert [(r["seed"], r["n_fit"], r["n_val"]) for r in out["runs"]] == [(0, 8, 2), (1, 8, 2)]


def _many(n_per_class: int, n_classes: int = 3) -> Labelled:
    y = np.repeat(np.arange(n_classes), n_per_class).astype(np.int64)
    xs = [np.zeros((1, 8), np.float32) for _ in y]
    split = Split(xs, y, np.array([f"g{i // 2}" for i in range(len(y))]))
    return Labelled(split, split, [str(c) for c in range(n_classes)])


def test_a_one_percent_run_validates_only_on_its_own_share_of_the_labels() -> None:
    data = _many(100)  # 300 training labels
    for fraction in (0.01, 0.1, 1.0):
        sub, fit, val = label_budget(data, fraction, val_fraction=0.2, seed=0)
        # fit + validation together are exactly the fraction's labels, never more
        assert len(fit) + len(val) == len(sub) == len(stratified_fraction(data.train.y, fraction, 0))
        assert set(fit) | set(val) == set(sub) and not set(fit) & set(val)
    sub, fit, val = label_budget(data, 0.01, val_fraction=0.2, seed=0)
    assert len(sub) == 3 and len(val) == 0  # one label per class: no room for validation
    sub, fit, val = label_budget(data, 1.0, val_fraction=0.2, seed=0)
    assert 0 < len(val) <= 0.25 * len(sub)


def test_without_validation_labels_full_runs_the_whole_epoch_budget_and_linear_uses_c_1() -> None:
    data = _data()
    cfg = FinetuneCfg(epochs=7, batch_size=8, patience=1)
    enc = build_encoder("timeseries", {"in_channels": 1, "hidden_dim": 8, "out_dim": 16, "depth": 2})
    _, acc, fitted = finetune_one("timeseries", enc, data, np.arange(6), np.arange(0), "full", cfg, seed=0)
    assert fitted == {"best_epoch": 6} and 0.0 <= acc <= 1.0
    _, acc, fitted = finetune_one("timeseries", enc, data, np.arange(6), np.arange(0), "linear", cfg, seed=0)
    assert fitted["linear_C"] == 1.0 and fitted["val_accuracy"] is None and 0.0 <= acc <= 1.0


@pytest.mark.parametrize("mode", ["linear", "full", "core"])
def test_finetune_keeps_every_tensor_on_the_model_device(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the classifier on an accelerator (a fake one: see tests/fake_device.py), batches, labels
    and Core-tuning's head follow it; an op mixing host and device tensors would fail."""
    from stages.common.encoders import build_projection_head
    from stages.finetune import __main__ as ft
    from tests.fake_device import FakeDevice, tag_modules

    fake = FakeDevice(armed=False)

    class OnDevice(ft.Classifier):
        def to(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            out = super().to(*args, **kwargs)
            tag_modules(out)
            fake.armed = True  # from here on, the model lives on the device
            return out

    monkeypatch.setattr(ft, "Classifier", OnDevice)
    head = build_projection_head(16)
    real_head_to = head.to

    def head_to(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        fake.armed = False  # moving a module is where its tensors legitimately change place
        out = real_head_to(*args, **kwargs)
        tag_modules(out)
        fake.armed = True
        return out

    monkeypatch.setattr(head, "to", head_to)
    enc = build_encoder("timeseries", {"in_channels": 1, "hidden_dim": 8, "out_dim": 16, "depth": 2})
    cfg = FinetuneCfg(epochs=2, batch_size=8, patience=2)
    with fake:
        _, acc, _ = finetune_one(
            "timeseries", enc, _data(), np.arange(30), np.arange(30, 40), mode, cfg, seed=0, head=head
        )
    assert 0.0 <= acc <= 1.0


@pytest.mark.parametrize("mode", ["linear", "full"])
def test_read_only_split_indices_as_ray_ships_them_give_no_warning(mode: str) -> None:
    data = _data()
    train_idx, val_idx = np.arange(30), np.arange(30, 40)
    for a in (train_idx, val_idx):
        a.setflags(write=False)  # arrays from Ray's object store are read-only
    enc = build_encoder("timeseries", {"in_channels": 1, "hidden_dim": 8, "out_dim": 16, "depth": 2})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        finetune_one(
            "timeseries", enc, data, train_idx, val_idx, mode, FinetuneCfg(epochs=1, batch_size=8), seed=0
        )
