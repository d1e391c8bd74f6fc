"""The pretraining loop in-process (no Ray): it learns, and its checkpoint format round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stages.common.encoders import load_encoder, save_encoder
from stages.common.schema import PretrainCfg
from stages.pretrain.loop import _load_checkpoint, _save_checkpoint, build_model, run_in_process


def _config(epochs: int = 6, steps: int = 4) -> dict:
    pre = PretrainCfg(
        epochs=epochs, batch_size=16, lr=3e-3, temperature=0.2, head={"hidden_dim": 32, "out_dim": 16}
    ).model_dump()
    return {
        "domain": "timeseries",
        "encoder": {"in_channels": 1, "hidden_dim": 16, "out_dim": 32, "depth": 3},
        "pretrain": pre,
        "policy": {"name": "default", "params": {}},
        "local_batch": 16,
        "steps_per_epoch": steps,
    }


def _data(n: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 60, dtype=np.float32)
    return [
        np.sin(2 * np.pi * (1 + i % 4) * t + rng.uniform(0, 6))[None].astype(np.float32) for i in range(n)
    ]


def test_loss_decreases_and_every_epoch_runs_its_steps() -> None:
    model, history = run_in_process(_config(), _data())
    assert [h["epoch"] for h in history] == list(range(6))
    assert history[-1]["loss"] < history[0]["loss"]
    assert all(0.0 <= h["data_wait_fraction"] <= 1.0 for h in history)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    config = _config(1, steps=2)
    model, history = run_in_process(config, _data(32))
    optim = torch.optim.AdamW(model.parameters())
    _save_checkpoint(str(tmp_path), model, optim, {"epoch": 0, "history": history})
    fresh = build_model({**config, "pretrain": {**config["pretrain"], "seed": 123}})
    state = _load_checkpoint(str(tmp_path), fresh, torch.optim.AdamW(fresh.parameters()))
    assert state["epoch"] == 0
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_saved_encoder_loads_in_three_lines(tmp_path: Path) -> None:
    config = _config(1)
    model = build_model(config)
    save_encoder(str(tmp_path / "enc"), model.encoder, {"domain": "timeseries", "encoder": config["encoder"]})
    assert (tmp_path / "enc" / "encoder.safetensors").exists()
    encoder = load_encoder(str(tmp_path / "enc"))
    x = torch.randn(3, 1, 40)
    model.encoder.eval()
    torch.testing.assert_close(encoder(x), model.encoder(x))


def test_same_seed_gives_the_same_training_run() -> None:
    """Determinism: same seed and data give the same losses and weights; another seed does not."""
    a_model, a = run_in_process(_config(2, steps=2), _data(32))
    b_model, b = run_in_process(_config(2, steps=2), _data(32))
    assert [h["loss"] for h in a] == [h["loss"] for h in b]
    for x, y in zip(a_model.state_dict().values(), b_model.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    other = _config(2, steps=2)
    other["pretrain"]["seed"] = 1
    _, c = run_in_process(other, _data(32))
    assert [h["loss"] for h in c] != [h["loss"] for h in a]


def test_each_epoch_shows_progress_in_plain_lines(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """DVC logs are not a terminal: one plain line per epoch, no carriage-return redraws."""
    monkeypatch.setenv("CONTRAFLOW_PROGRESS", "1")
    run_in_process(_config(3, steps=1), _data(16))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("pretrain: epochs")]
    assert [line.split()[2] for line in lines] == ["1/3", "2/3", "3/3"]
    assert not any("\r" in line for line in lines)
